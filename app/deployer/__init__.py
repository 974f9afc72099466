"""Deployers: put a trained policy in front of traffic, locally or on one Vertex AI endpoint."""
