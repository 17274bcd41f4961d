"""SQS records -> one outcome per record: answered (with its prediction) or failed (with its typed reason).

Every record ends one of two ways: its result is delivered, or its messageId is in batchItemFailures so SQS makes it
visible again and, past maxReceiveCount, moves it to the dead-letter queue. Valid records that share parameters go
through the model in one padded forward pass; when that pass fails, each record is retried alone so that one bad
record does not fail its neighbours. Delivery is the caller's step (runtime/function.py), on the same outcomes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import Any, TypedDict

from runtime.errors import RequestError, as_request_error
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


Outcome = Answered | Failed


def process_records(
    records: list[SqsRecord], predictor: Predictor, limits: Limits, logger: logging.Logger
) -> list[Outcome]:
    """One outcome per record, in the order SQS delivered them.

    Args:
        records: the event's records.
        predictor: the function's model and task.
        limits: request limits applied to each body.
        logger: where rejected and failed records are explained.
    """
    outcomes: dict[int, Outcome] = {}
    groups: dict[str, list[tuple[int, str, Request]]] = {}
    for at, record in enumerate(records):
        try:
            request = parse_body(record.body, limits)
        except RequestError as e:
            outcomes[at] = _failed("rejected record", record.message_id, e, logger)
            continue
        groups.setdefault(json.dumps(request.parameters, sort_keys=True), []).append((at, record.message_id, request))
    for members in groups.values():
        try:
            outcomes.update(_predict_group(members, predictor))
        except Exception:
            for member in members:
                at, message_id, _ = member
                try:
                    outcomes.update(_predict_group([member], predictor))
                except Exception as e:
                    outcomes[at] = _failed("failed record", message_id, as_request_error(e, message_id, logger), logger)
    return [outcomes[at] for at in range(len(records))]


def batch_response(records: list[SqsRecord], failed: set[str]) -> SqsBatchResponse:
    """batchItemFailures for the failed messageIds, each once, in the order SQS delivered them."""
    in_order = dict.fromkeys(r.message_id for r in records)
    return {"batchItemFailures": [{"itemIdentifier": mid} for mid in in_order if mid in failed]}


def _predict_group(members: list[tuple[int, str, Request]], predictor: Predictor) -> dict[int, Outcome]:
    inputs = [x for _, _, req in members for x in req.inputs]
    prediction = predictor.predict(inputs, members[0][2].parameters)
    out: dict[int, Outcome] = {}
    start = 0
    for at, message_id, req in members:
        mine = prediction.outputs[start : start + len(req.inputs)]
        cut = tuple(i - start for i in prediction.truncated_inputs if start <= i < start + len(req.inputs))
        start += len(req.inputs)
        # this record's view of the shared pass: same timings (the same request_ms object), its own truncations
        own = replace(prediction, truncated_inputs=cut, input_tokens=None)  # tokens are counted per pass
        out[at] = Answered(message_id, mine[0] if req.single else mine, own, len(members))
    return out


def _failed(why: str, message_id: str, error: RequestError, logger: logging.Logger) -> Failed:
    logger.warning(
        why,
        extra={"fields": {"messageId": message_id, "errorType": error.error_type, "errorMessage": str(error)}},
    )
    return Failed(message_id, error)
