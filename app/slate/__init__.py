"""List-wise (slate) recommendations: a sequential MovieLens environment, actor-critic."""
