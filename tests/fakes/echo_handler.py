"""Returns the event plus what awslambdaric put in the context, proving the call went through it."""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)


def handler(event, context):
    logger.info("echo_handler got request %s", context.aws_request_id)
    return {
        "event": event,
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "pid": os.getpid(),
    }
