"""`make bench`: speed and quality of recloop against TF-Agents' own way of doing it."""
