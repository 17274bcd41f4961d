"""Sleeps event["sleep_s"] seconds, then answers with its pid and how many requests it has served."""

from __future__ import annotations

import os
import time

_served = 0


def handler(event, context):
    global _served
    _served += 1
    time.sleep(float(event.get("sleep_s", 0)))
    return {"pid": os.getpid(), "served": _served}
