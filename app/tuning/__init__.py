"""Hyper-parameter tuning: one search space, run locally (Optuna) or on Vertex AI."""
