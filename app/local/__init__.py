"""The embedded default: local counterparts of the cloud parts, run as real processes."""
