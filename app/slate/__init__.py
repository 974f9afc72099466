"""List-wise (slate) recommendations: a sequential MovieLens environment and an actor-critic agent."""
