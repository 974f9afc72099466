"""`make chaos`: fault scenarios against the real local parts, with the ledger's accounting.

Each scenario creates joined interactions, delivers them through the Logger (in-process, over
functions-framework, or through the Pub/Sub emulator), injects its fault, re-trains with the
pipeline steps until nothing is left, and then counts, per interaction, how often the ledger
and the published policy's LinUCB statistics say it was trained on (docs/reliability.md).
"""
