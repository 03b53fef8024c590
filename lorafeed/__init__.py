"""lorafeed: the CLI and the shared platform (stack, client factories, models, failpoints)."""

__version__ = "0.1.0"
