"""`python -m app.rehearsal`: see app/rehearsal/runner.py."""

import sys

from app.rehearsal.runner import main

sys.exit(main())
