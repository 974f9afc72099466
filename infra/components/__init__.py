"""Components: small constructs, one concern each, composed by the stacks."""
