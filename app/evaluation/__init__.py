"""Judging a candidate policy before it serves: off-policy estimates, the gate, the canary."""
