"""The Lambda function: built once per container from Settings and the bundle, then answers every event.

    event -> classify -> adapter (runtime/events.py) -> Request (runtime/request.py; an HTTP path's route,
          runtime/routes/) -> Predictor.predict: task + engine -> Prediction -> response for the event kind
          (runtime/responses.py; in the route's shape for HTTP)

`Function.load` is the setup step: a failure there is fatal (Lambda reports an init error). `Function.handle` is the
per-event step: a bad request is an answer, and the function keeps serving.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from runtime.batch import Answered, BatchRun, Failed, Outcome
from runtime.deadline import Deadline, invocation
from runtime.errors import BundleCorruptError, MethodNotAllowedError, RequestError, as_request_error
from runtime.events import EventKind, HttpEvent, SqsRecord, classify
from runtime.golden import GoldenCheck
from runtime.logs import InvocationLog, get_logger, log_invocation
from runtime.predictor import Predictor
from runtime.request import decode_json, parse_payload
from runtime.responses import ServedBy, envelope, error_body, http_error, http_response, timing_headers
from runtime.routes import Reply, Router
from runtime.settings import Settings, set_library_environment
from runtime.sinks import Result, ResultSink, open_sink
from runtime.timing import StageTimer


@dataclass
class _Answer:
    """One invocation's response and what its log line says about it."""

    response: Any
    status: str
    timing: dict[str, Any]
    request_ms: dict[str, float]
    inference_ms: float | None
    errors: int = 0
    records: int | None = None
    error: RequestError | None = None


class Function:
    """Owns the loaded model and task (the Predictor), the canary result, the cold flag and the SQS result sink."""

    def __init__(
        self,
        predictor: Predictor,
        settings: Settings,
        *,
        init_ms: dict[str, float] | None = None,
        canary: GoldenCheck | None = None,
        logger: logging.Logger | None = None,
        sink: ResultSink | None = None,
    ) -> None:
        self.predictor = predictor
        self.settings = settings
        self.init_ms = init_ms or {}
        self.canary = canary
        self.logger = logger or get_logger(settings.log_level)
        self.served = ServedBy(
            model=predictor.describe_model(),
            init_ms=self.init_ms,
            device=predictor.model.device,
            dtype=predictor.model.dtype,
            threads=settings.threads,
        )
        self.router = Router(predictor.model.manifest.task)
        self._cold = True
        self._sink = sink  # Function.load opens it; otherwise on the first SQS event

    @classmethod
    def load(cls, settings: Settings, *, t0_ns: int | None = None) -> Function:
        """Read the bundle, build the engine and task, run the golden canary. Raises BundleError on any problem.

        Args:
            settings: the function's settings.
            t0_ns: perf_counter_ns when init began (the handler module's import); defaults to now.
        """
        t0_ns = t0_ns or time.perf_counter_ns()
        set_library_environment()
        logger = get_logger(settings.log_level)
        predictor = Predictor.load(settings)
        t = time.perf_counter_ns()
        canary = None
        if settings.canary:
            canary = predictor.check_golden(limit=1)
            if not canary.ok:
                raise BundleCorruptError(
                    f"canary failed: the first golden example ('golden[0]') of {settings.model_bundle} gives "
                    f"{canary.describe()} against the output stored at build time; the model does not "
                    "compute what it computed when it was built"
                )
        canary_ms = (time.perf_counter_ns() - t) / 1e6
        t = time.perf_counter_ns()
        sink = open_sink(settings.results_queue_url, settings.results_bucket, logger)
        sink_ms = (time.perf_counter_ns() - t) / 1e6
        init_ms = {
            **{k: round(v, 3) for k, v in predictor.model.phases_ms.items()},
            "canary": round(canary_ms, 3),
            "results_sink": round(sink_ms, 3),
            "total": round((time.perf_counter_ns() - t0_ns) / 1e6, 3),
        }
        fn = cls(predictor, settings, init_ms=init_ms, canary=canary, logger=logger, sink=sink)
        fn.logger.info(
            "init",
            extra={
                "fields": {
                    "init_ms": init_ms,
                    "model": fn.served.model,
                    "threads": fn.served.threads,
                    "canary": canary.describe() if canary else None,
                }
            },
        )
        return fn

    def handle(self, event: Any, context: Any) -> Any:
        """Answer one event: direct invoke, API Gateway v1/v2, Function URL or SQS batch.

        Raises:
            RequestError subclasses for a bad direct invoke (the errorType names the problem).
        """
        cold, self._cold = self._cold, False
        request_id = getattr(context, "aws_request_id", None) or f"local-{uuid.uuid4()}"
        kind = classify(event)
        started = time.perf_counter_ns()
        with invocation(context):  # a decoding loop stops in time (runtime/tasks/generation.py)
            if kind is EventKind.SQS:
                answer = self._sqs(event, request_id, context, cold)
            elif kind is EventKind.DIRECT:
                answer = self._direct(event, request_id, cold)
            else:
                answer = self._http(event, kind, request_id, cold)
        total_ms = round((time.perf_counter_ns() - started) / 1e6, 3)
        request_ms = {**answer.request_ms, "total": answer.request_ms.get("total", total_ms)}
        log_invocation(
            self.logger,
            InvocationLog(
                kind=kind.value,
                request_id=request_id,
                status=answer.status,
                cold_start=cold,
                init_total_ms=float(self.init_ms.get("total", 0.0)),
                timing=answer.timing or {"cold_start": cold, "init_ms": self.init_ms, "request_ms": request_ms},
                request_ms=total_ms,
                inference_ms=answer.inference_ms,
                errors=answer.errors,
                records=answer.records,
                error=answer.error.describe() if answer.error else None,
            ),
            namespace=self.settings.metrics_namespace,
            function_name=self.settings.aws_lambda_function_name,
        )
        if kind is EventKind.DIRECT and answer.error is not None:
            raise answer.error  # the runtime renders it as {"errorType", "errorMessage"}
        return answer.response

    def _direct(self, event: Any, request_id: str, cold: bool) -> _Answer:
        timer = self.predictor.new_timer()
        try:
            with timer.stage("parse"):
                request = parse_payload(event, self.settings.limits)
            prediction = self.predictor.predict(request.inputs, request.parameters, timer=timer)
        except Exception as e:
            error = as_request_error(e, request_id, self.logger)
            return self._failed(None, error.error_type, error, timer)
        outputs = prediction.outputs[0] if request.single else prediction.outputs
        body = envelope(self.served, prediction, outputs, request_id=request_id, cold=cold)
        return _Answer(body, "ok", body["timing"], prediction.request_ms, prediction.inference_ms)

    def _http(self, event: dict[str, Any], kind: EventKind, request_id: str, cold: bool) -> _Answer:
        timer = self.predictor.new_timer()
        route = self.router.default
        try:
            with timer.stage("parse"):
                http = HttpEvent(event, kind)
                route = self.router.find(http.path)
                if http.method != "POST":
                    raise MethodNotAllowedError(
                        f"method {http.method or '(none)'} is not allowed on {http.path}; send POST with a JSON body"
                    )
                http.require_json()
                body = http.body(self.settings.max_body_bytes)
                request = route.parse(decode_json(body, self.settings.limits, route.example), self.settings.limits)
            prediction = self.predictor.predict(request.inputs, request.parameters, timer=timer)
            reply = Reply(request, prediction, self.served, request_id, cold)
            body = route.body(reply)
        except Exception as e:
            error = as_request_error(e, request_id, self.logger)
            response = http_error(error, request_id, route.error_body(error, request_id))
            return self._failed(response, str(error.status), error, timer)
        when = reply.timing()
        response = http_response(200, body, request_id, timing_headers(when))
        return _Answer(response, "200", when, prediction.request_ms, prediction.inference_ms)

    def _sqs(self, event: dict[str, Any], request_id: str, context: Any, cold: bool) -> _Answer:
        records = [SqsRecord(r) for r in event.get("Records", [])]
        run = BatchRun(
            records, self.settings.limits, self.logger, error_results=self.settings.sqs_error_results == "deliver"
        )
        deadline = Deadline(context, self.settings.deadline_margin_ms)
        inference = 0.0
        ran = False
        for chunk in run.chunks(self.settings.max_batch_items):
            if not deadline.allows_next():
                deferred = run.defer_rest(chunk, deadline.describe())
                self.logger.warning(
                    "records not started: the invocation's time is nearly up; they return to the queue",
                    extra={"fields": {"records": deferred, **deadline.fields()}},
                )
                break
            with deadline.chunk():
                outcomes = run.in_order(run.predict(chunk, self.predictor))
                results = [self._result(o, request_id, cold, run) for o in outcomes]
                sent = [r for r in results if r is not None]
                run.settle(outcomes, self.sink.send(sent) if sent else set())
            passes = {id(o.prediction.request_ms): o.prediction for o in outcomes if isinstance(o, Answered)}
            inference += sum(p.inference_ms for p in passes.values())
            ran = ran or bool(passes)
        response = run.response()
        failures = len(response["batchItemFailures"])
        inference_ms = round(inference, 3) if ran else None
        return _Answer(
            response,
            f"{failures} failed of {len(records)}",
            {},
            {"inference": inference_ms} if inference_ms is not None else {},
            inference_ms,
            errors=failures,
            records=len(records),
        )

    def _result(self, outcome: Outcome, request_id: str, cold: bool, run: BatchRun) -> Result | None:
        """The message to deliver for an outcome: an answer, an error result (SQS_ERROR_RESULTS=deliver), or none."""
        group = run.group_of(outcome.message_id)
        if isinstance(outcome, Answered):
            body = envelope(
                self.served,
                outcome.prediction,
                outcome.outputs,
                request_id=request_id,
                cold=cold,
                batch_records=outcome.batch_records,
            )
            return Result(outcome.message_id, body, group)
        if isinstance(outcome, Failed) and run.reportable(outcome):
            return Result(outcome.message_id, error_body(outcome.error, request_id), group)
        return None

    def _failed(self, response: Any, status: str, error: RequestError, timer: StageTimer) -> _Answer:
        stages = timer.as_ms()
        return _Answer(response, status, {}, stages, stages.get("inference"), errors=1, error=error)

    @property
    def sink(self) -> ResultSink:
        if self._sink is None:
            self._sink = open_sink(self.settings.results_queue_url, self.settings.results_bucket, self.logger)
        return self._sink
