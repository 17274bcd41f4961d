"""Sleeps env SLOW_INIT_S seconds at import (a model load stand-in), then echoes the event."""

from __future__ import annotations

import os
import time

time.sleep(float(os.environ.get("SLOW_INIT_S", "0")))


def handler(event, context):
    return {"event": event, "pid": os.getpid()}
