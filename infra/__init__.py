"""recloop's infrastructure as cdktf stacks (the only place that imports cdktf)."""
