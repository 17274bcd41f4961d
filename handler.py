"""Lambda entry point: `handler.handler`, run by awslambdaric.

Init (this module's import, once per container) builds the Function from the environment: it reads the bundle named
by MODEL_BUNDLE, builds the model and runs the golden canary; any problem there raises, and Lambda reports an init
error before the first request. Each event is then answered by FUNCTION.handle (runtime/function.py).

Run one event locally:  python handler.py events/direct_single.json
"""

from __future__ import annotations

import time

_INIT_T0 = time.perf_counter_ns()

import json  # noqa: E402
import sys  # noqa: E402
import uuid  # noqa: E402
from typing import Any  # noqa: E402

from runtime.errors import RequestError  # noqa: E402
from runtime.function import Function  # noqa: E402
from runtime.settings import Settings  # noqa: E402

FUNCTION = Function.load(Settings.from_env(), t0_ns=_INIT_T0)


def handler(event: Any, context: Any) -> Any:
    """The Lambda handler: answers direct invokes, API Gateway v1/v2, Function URLs and SQS batches."""
    return FUNCTION.handle(event, context)


class LocalContext:
    """The parts of the Lambda context object the handler reads, for running events from the command line."""

    function_name = "local"
    memory_limit_in_mb = 0

    def __init__(self) -> None:
        self.aws_request_id = f"local-{uuid.uuid4()}"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python handler.py EVENT.json", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        event = json.load(f)
    try:
        response = handler(event, LocalContext())
    except RequestError as e:
        print(json.dumps({"errorType": e.error_type, "errorMessage": str(e)}, indent=2))
        return 1
    print(json.dumps(response, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
