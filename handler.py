"""Lambda entry point: classify the event -> adapt it -> predict -> respond.

Init (this module's import, once per container) reads the bundle named by MODEL_BUNDLE, builds the model and runs
the golden canary; any problem there raises, and Lambda reports an init error before the first request.

Run one event locally:  python handler.py events/direct_single.json
"""

from __future__ import annotations

import time

_INIT_T0 = time.perf_counter_ns()

import json  # noqa: E402
import sys  # noqa: E402
import uuid  # noqa: E402
from typing import Any  # noqa: E402

from runtime.batch import LogSink, QueueSink, ResultSink, process_records  # noqa: E402
from runtime.errors import InternalError, MethodNotAllowedError, RequestError  # noqa: E402
from runtime.events import EventKind, HttpEvent, classify  # noqa: E402
from runtime.logs import get_logger, log_invocation  # noqa: E402
from runtime.predictor import Predictor  # noqa: E402
from runtime.request import Limits, parse_body, parse_payload  # noqa: E402
from runtime.settings import Settings  # noqa: E402
from runtime.timing import StageTimer  # noqa: E402

SETTINGS = Settings.from_env()
LOGGER = get_logger(SETTINGS.log_level)
LIMITS = Limits(
    max_body_bytes=SETTINGS.max_body_bytes,
    max_items=SETTINGS.max_batch_items,
    max_chars=SETTINGS.max_input_chars,
)
PREDICTOR = Predictor.setup(SETTINGS, t0_ns=_INIT_T0)
LOGGER.info("init", extra={"fields": {"init_ms": PREDICTOR.init_ms, "model": PREDICTOR.describe_model(), "threads": PREDICTOR.threads, "canary": PREDICTOR.canary.describe() if PREDICTOR.canary else None}})

_cold = True
_sink: ResultSink | None = None


def _timing(request_id: str, request_ms: dict[str, Any], extra: dict[str, Any], cold: bool) -> dict[str, Any]:
    return {
        "cold_start": cold,
        "init_ms": PREDICTOR.init_ms,
        "request_ms": request_ms,
        "device": PREDICTOR.loaded.device,
        "dtype": PREDICTOR.loaded.dtype,
        "threads": PREDICTOR.threads,
        "request_id": request_id,
        **extra,
    }


def _answer(inputs: list[Any], single: bool, params: dict[str, Any], timer: StageTimer, request_id: str, cold: bool) -> dict[str, Any]:
    outputs, extra = PREDICTOR.predict(inputs, params, timer)
    return {
        "outputs": outputs[0] if single else outputs,
        "model": PREDICTOR.describe_model(),
        "timing": _timing(request_id, timer.as_ms(), extra, cold),
    }


def _new_timer() -> StageTimer:
    return StageTimer(cuda=PREDICTOR.loaded.device.startswith("cuda"))


def _direct(event: Any, request_id: str, cold: bool) -> dict[str, Any]:
    timer = _new_timer()
    with timer.stage("parse"):
        req = parse_payload(event, LIMITS)
    return _answer(req.inputs, req.single, req.parameters, timer, request_id, cold)


def _http_response(status: int, body: dict[str, Any], request_id: str) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", "X-Request-Id": request_id},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def _http(event: dict[str, Any], kind: EventKind, request_id: str, cold: bool) -> tuple[dict[str, Any], RequestError | None]:
    timer = _new_timer()
    try:
        with timer.stage("parse"):
            http = HttpEvent(event, kind)
            if http.method != "POST":
                raise MethodNotAllowedError(f"method {http.method or '(none)'} is not allowed; send POST with a JSON body")
            req = parse_body(http.body, LIMITS)
        return _http_response(200, _answer(req.inputs, req.single, req.parameters, timer, request_id, cold), request_id), None
    except RequestError as e:
        error = {"type": type(e).__name__, "message": str(e), "request_id": request_id}
        return _http_response(e.status, {"error": error}, request_id), e
    except Exception:  # noqa: BLE001 - a caller gets the request id, never a stack trace
        LOGGER.exception("internal error", extra={"fields": {"request_id": request_id}})
        e = InternalError(f"internal error while answering request {request_id}; the function's log has the details")
        return _http_response(500, {"error": {"type": "InternalError", "message": str(e), "request_id": request_id}}, request_id), e


def _sqs(event: dict[str, Any], request_id: str, cold: bool) -> dict[str, Any]:
    global _sink
    if _sink is None:
        _sink = QueueSink(SETTINGS.results_queue_url) if SETTINGS.results_queue_url else LogSink(LOGGER)

    def predict(inputs: list[Any], params: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        timer = _new_timer()
        outputs, extra = PREDICTOR.predict(inputs, params, timer)
        return outputs, {**extra, "request_ms": timer.as_ms()}

    def envelope(outputs: Any, extra: dict[str, Any]) -> dict[str, Any]:
        extra = dict(extra)
        request_ms = extra.pop("request_ms")
        return {"outputs": outputs, "model": PREDICTOR.describe_model(), "timing": _timing(request_id, request_ms, extra, cold)}

    return dict(process_records(event.get("Records", []), predict, _sink, LIMITS, envelope, LOGGER))


def handler(event: Any, context: Any) -> dict[str, Any]:
    """The Lambda handler: answers direct invokes, API Gateway v1/v2, Function URLs and SQS batches.

    Raises:
        RequestError subclasses for a bad direct invoke (the errorType names the problem).
    """
    global _cold
    cold, _cold = _cold, False
    request_id = getattr(context, "aws_request_id", None) or f"local-{uuid.uuid4()}"
    kind = classify(event)
    started = time.perf_counter_ns()
    status, error, timing = "ok", None, {"cold_start": cold, "init_ms": PREDICTOR.init_ms}
    try:
        if kind is EventKind.SQS:
            response = _sqs(event, request_id, cold)
            status = f"{len(response['batchItemFailures'])} failed of {len(event.get('Records', []))}"
            return response
        if kind is EventKind.DIRECT:
            response = _direct(event, request_id, cold)
            timing = response["timing"]
            return response
        response, err = _http(event, kind, request_id, cold)
        status = str(response["statusCode"])
        if err is not None:
            error = f"{type(err).__name__}: {err}"
        else:
            timing = json.loads(response["body"])["timing"]
        return response
    except RequestError as e:
        status, error = type(e).__name__, str(e)
        raise
    except Exception as e:  # noqa: BLE001 - direct invokes get a typed error without internals
        LOGGER.exception("internal error", extra={"fields": {"request_id": request_id}})
        status, error = "InternalError", f"{type(e).__name__}: {e}"
        raise InternalError(f"internal error while answering request {request_id}; the function's log has the details") from None
    finally:
        timing.setdefault("request_ms", {"total": round((time.perf_counter_ns() - started) / 1e6, 3)})
        log_invocation(LOGGER, kind=kind.value, request_id=request_id, status=status, timing=timing, error=error)


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
        print(json.dumps({"errorType": type(e).__name__, "errorMessage": str(e)}, indent=2))
        return 1
    print(json.dumps(response, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
