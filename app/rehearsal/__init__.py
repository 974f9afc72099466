"""Running the cloud components as deployed, against local or request-capturing services."""
