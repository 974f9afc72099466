"""Stacks per environment: `<env>-data` (stateful), `<env>-app` (stateless), `<env>-bootstrap`."""
