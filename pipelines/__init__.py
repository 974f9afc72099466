"""KFP v2 components and the two recloop pipelines (start-up and re-training)."""
