"""The predictor: a Vertex AI custom prediction container serving a saved bandit policy."""
