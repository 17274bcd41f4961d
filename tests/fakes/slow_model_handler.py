"""The real handler (its import is the real init), made slow on request: an event {"sleep_s": N} sleeps N seconds
before answering; every other event goes to handler.handler unchanged. For hitting the function timeout."""

from __future__ import annotations

import time

import handler as real


def handler(event, context):
    if isinstance(event, dict) and "sleep_s" in event:
        time.sleep(float(event["sleep_s"]))
        return {"slept_s": event["sleep_s"]}
    return real.handler(event, context)
