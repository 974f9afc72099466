"""The bandit trainer: `python -m app.trainer`, a Vertex AI custom-training entrypoint."""
