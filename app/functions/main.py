"""functions-framework entry points (`--target simulator|logger|trigger`).

Cloud Functions gen2 and the local demo load this same file; each target is a CloudEvent
function fed by a Pub/Sub push subscription (infra/components/function.py in the cloud, the
emulator locally); functions-framework turns a push request into a `messagePublished`
CloudEvent (tests/test_function_entry_points.py).
"""

from __future__ import annotations

import functions_framework

from app.functions.logger import logger as _logger
from app.functions.simulator import simulator as _simulator
from app.functions.trigger import trigger as _trigger

logger = functions_framework.cloud_event(_logger)
simulator = functions_framework.cloud_event(_simulator)
trigger = functions_framework.cloud_event(_trigger)
