"""SQS records -> one outcome per record, chunk by chunk: answered, failed (with its typed reason) or deferred.

Every record ends one of two ways: its result is delivered, or its messageId is in batchItemFailures so SQS makes it
visible again and, past maxReceiveCount, moves it to the dead-letter queue. Valid records that share parameters go
through the model in one padded forward pass (a chunk, at most MAX_BATCH_ITEMS inputs); when that pass fails, each
record is retried alone so that one bad record does not fail its neighbours.

The caller (runtime/function.py) delivers each chunk's results before the next chunk starts and asks, before each
chunk, whether the invocation has time left for it; records not started are *deferred*: reported as failures without
being run, so SQS hands them out again and nothing delivered is computed twice.

FIFO sources keep each message group in order: chunks follow the delivery order, and once a record of a group fails
(in parsing, in the model, or in delivery) every later record of that group is deferred, as Powertools'
SqsFifoPartialProcessor does with skip_group_on_error.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, TypedDict

from runtime.errors import InvalidInputError, RequestError, as_request_error
from runtime.events import SqsRecord
from runtime.prediction import Prediction
from runtime.predictor import Predictor
from runtime.request import Limits, Request, parse_body


class BatchItemFailure(TypedDict):
    itemIdentifier: str


class SqsBatchResponse(TypedDict):
    batchItemFailures: list[BatchItemFailure]


@dataclass(frozen=True)
class Answered:
    message_id: str
    outputs: Any  # this record's answer: one output, or a list for a list of inputs
    prediction: Prediction  # the forward pass it shared (timings, token counts); truncations are this record's
    batch_records: int  # records in that forward pass


@dataclass(frozen=True)
class Failed:
    message_id: str
    error: RequestError


@dataclass(frozen=True)
class Deferred:
    """Not run: back to the queue as it was (the deadline was near, or an earlier record of its FIFO group failed)."""

    message_id: str
    reason: str


@dataclass(frozen=True)
class Reported:
    """Failed for good (a 4xx-class error), its error result delivered and the message acknowledged
    (SQS_ERROR_RESULTS=deliver)."""

    message_id: str
    error: RequestError


Outcome = Answered | Failed | Deferred | Reported


class InvalidSqsEventError(InvalidInputError):
    """An SQS event whose records cannot be told apart (a record without a messageId)."""


@dataclass(frozen=True)
class _Member:
    message_id: str
    group: str | None  # MessageGroupId on a FIFO source
    request: Request | None  # None: the body was refused (error)
    error: RequestError | None = None


class BatchRun:
    """One SQS event's records: parsed once, then run chunk by chunk by the caller.

        run = BatchRun(records, limits, logger)
        for chunk in run.chunks(max_items):
            if no time is left: run.defer_rest(chunk, why); break
            outcomes = run.predict(chunk, predictor)
            ... deliver the Answered ones ...
            run.settle(outcomes, undelivered)
        run.response()

    With error_results, a record that can never succeed (a 4xx-class error) is answered with an error result,
    which the caller delivers like any other result, instead of being retried into the dead-letter queue.
    """

    def __init__(
        self, records: list[SqsRecord], limits: Limits, logger: logging.Logger, *, error_results: bool = False
    ) -> None:
        self._logger = logger
        self.error_results = error_results
        self.records = records
        self.fifo = any(r.message_group_id for r in records)
        self.outcomes: dict[str, Outcome] = {}
        self._failed_groups: set[str] = set()
        self._members: list[_Member] = []
        self._groups: dict[str, str | None] = {}
        seen: set[str] = set()
        for at, record in enumerate(records):
            message_id = record.message_id
            if not message_id:
                raise InvalidSqsEventError(
                    f"SQS record {at} has no messageId, so its outcome cannot be reported; the whole batch is "
                    "returned to the queue. Records from an SQS event source mapping always carry one"
                )
            if message_id in seen:  # at-least-once delivery: the same message twice in one event is run once
                logger.warning(
                    "duplicate messageId in one event: answered once", extra={"fields": {"messageId": message_id}}
                )
                continue
            seen.add(message_id)
            group = self._groups[message_id] = record.message_group_id
            try:
                self._members.append(_Member(message_id, group, parse_body(record.body, limits)))
            except RequestError as e:
                self._members.append(_Member(message_id, group, None, e))

    def chunks(self, max_items: int) -> Iterator[list[_Member]]:
        """Records to run together: same parameters, at most max_items inputs (a bigger record runs alone).

        Standard queues group by parameters across the whole event; FIFO sources only group neighbours, so chunks
        run in delivery order. Members of a group that failed meanwhile are deferred before their chunk runs.
        """
        runs: dict[Any, list[_Member]] = {}
        order: list[Any] = []
        for member in self._members:
            # a refused body is a chunk of its own; nothing runs for it
            key: Any = (
                member.message_id if member.request is None else json.dumps(member.request.parameters, sort_keys=True)
            )
            if self.fifo:
                key = (len(order), key) if not order or order[-1][1] != key else order[-1]
            if key not in runs:
                runs[key] = []
                order.append(key)
            runs[key].append(member)
        for key in order:
            chunk: list[_Member] = []
            items = 0
            for member in runs[key]:
                size = len(member.request.inputs) if member.request else 1
                if chunk and items + size > max_items:
                    yield from self._runnable(chunk)
                    chunk, items = [], 0
                chunk.append(member)
                items += size
            if chunk:
                yield from self._runnable(chunk)

    def predict(self, chunk: list[_Member], predictor: Predictor) -> list[Answered | Failed]:
        """The chunk's outcomes, in delivery order; a failed pass is retried record by record."""
        if chunk[0].error is not None:
            return [Failed(chunk[0].message_id, chunk[0].error)]
        try:
            return _predict_together(chunk, predictor)
        except Exception:
            outcomes: list[Answered | Failed] = []
            for member in chunk:
                try:
                    outcomes.extend(_predict_together([member], predictor))
                except Exception as e:
                    error = as_request_error(e, member.message_id, self._logger)
                    outcomes.append(Failed(member.message_id, error))
            return outcomes

    def in_order(self, outcomes: list[Answered | Failed]) -> list[Outcome]:
        """FIFO: a record after a failed record of its group is deferred, its answer dropped before delivery."""
        if not self.fifo:
            return list(outcomes)
        groups = self._groups
        failed = set(self._failed_groups)
        kept: list[Outcome] = []
        for outcome in outcomes:
            group = groups[outcome.message_id]
            if group in failed:
                kept.append(Deferred(outcome.message_id, f"an earlier message of FIFO group {group!r} failed"))
            else:
                kept.append(outcome)
                if isinstance(outcome, Failed) and not self.reportable(outcome) and group is not None:
                    failed.add(group)
        return kept

    def group_of(self, message_id: str) -> str | None:
        return self._groups.get(message_id)

    def reportable(self, outcome: Failed) -> bool:
        """Answered with an error result rather than retried: error_results is on and retrying cannot help."""
        return self.error_results and outcome.error.status < 500

    def settle(self, outcomes: list[Outcome], undelivered: set[str]) -> None:
        """Record a chunk's final outcomes after delivery: an answer or error result not delivered is a failure."""
        for outcome in outcomes:
            group = self._groups[outcome.message_id]
            if isinstance(outcome, Answered) and outcome.message_id in undelivered:
                self._fail(
                    Deferred(outcome.message_id, "its result could not be delivered"), group, "undelivered result"
                )
            elif isinstance(outcome, Failed) and self.reportable(outcome) and outcome.message_id not in undelivered:
                self.outcomes[outcome.message_id] = Reported(outcome.message_id, outcome.error)
                self._logger.warning("error result delivered", extra={"fields": _why(outcome)})
            elif isinstance(outcome, Failed):
                refused = any(m.message_id == outcome.message_id and m.request is None for m in self._members)
                self._fail(outcome, group, "rejected record" if refused else "failed record")
            elif isinstance(outcome, Deferred):
                self._fail(outcome, group, None)
            else:
                self.outcomes[outcome.message_id] = outcome

    def defer_rest(self, chunk: list[_Member], reason: str) -> int:
        """Defer this chunk and every record not yet run; returns how many."""
        left = [m for m in self._members if m.message_id not in self.outcomes]
        for member in left:
            self.outcomes[member.message_id] = Deferred(member.message_id, reason)
        return len(left)

    def response(self) -> SqsBatchResponse:
        """batchItemFailures: every record not answered, each once, in the order SQS delivered them."""
        not_done = {mid for mid, o in self.outcomes.items() if not isinstance(o, Answered | Reported)}
        not_done |= {r.message_id for r in self.records if r.message_id not in self.outcomes}
        in_order = dict.fromkeys(r.message_id for r in self.records)
        return {"batchItemFailures": [{"itemIdentifier": mid} for mid in in_order if mid in not_done]}

    def _runnable(self, chunk: list[_Member]) -> Iterator[list[_Member]]:
        if self.fifo:
            for member in chunk:
                if member.group in self._failed_groups:
                    self.outcomes[member.message_id] = Deferred(
                        member.message_id, f"an earlier message of FIFO group {member.group!r} failed"
                    )
            chunk = [m for m in chunk if m.message_id not in self.outcomes]
        if chunk:
            yield chunk

    def _fail(self, outcome: Failed | Deferred, group: str | None, why: str | None) -> None:
        self.outcomes[outcome.message_id] = outcome
        if self.fifo and group is not None:
            self._failed_groups.add(group)
        if why is not None:
            self._logger.warning(why, extra={"fields": _why(outcome)})


def _why(outcome: Failed | Deferred) -> dict[str, Any]:
    if isinstance(outcome, Failed):
        return {
            "messageId": outcome.message_id,
            "errorType": outcome.error.error_type,
            "errorMessage": str(outcome.error),
        }
    return {"messageId": outcome.message_id, "reason": outcome.reason}


def _predict_together(members: list[_Member], predictor: Predictor) -> list[Answered | Failed]:
    requests = [m.request for m in members if m.request is not None]
    inputs = [x for r in requests for x in r.inputs]
    prediction = predictor.predict(inputs, requests[0].parameters)
    out: list[Answered | Failed] = []
    start = 0
    for member, request in zip(members, requests, strict=True):
        count = len(request.inputs)
        mine = prediction.outputs[start : start + count]
        cut = tuple(i - start for i in prediction.truncated_inputs if start <= i < start + count)
        start += count
        # this record's view of the shared pass: same timings (the same request_ms object), its own truncations
        own = replace(prediction, truncated_inputs=cut, input_tokens=None)  # tokens are counted per pass
        out.append(Answered(member.message_id, mine[0] if request.single else mine, own, len(members)))
    return out
