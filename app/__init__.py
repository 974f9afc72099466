"""recloop: contextual-bandit recommendations with a closed feedback loop."""

import os

from app import quiet

# TF-Agents 0.19 needs Keras 2; this must be set before TensorFlow is first imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
quiet.install()
