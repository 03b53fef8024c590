"""serving: the inference node (scoring, grounded generation, feedback, live adapter reload)."""
