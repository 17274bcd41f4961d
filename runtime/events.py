"""Which AWS trigger sent an event, and thin read-only views over the HTTP ones.

Routing is one enum and one function. The Function URL event is the HTTP API v2 payload, so it shares that
adapter; REST (v1) differs only in where the method lives.
"""

from __future__ import annotations

import base64
import binascii
import enum
from typing import Any

from runtime.errors import InvalidInputError, PayloadTooLargeError, UnsupportedMediaTypeError


class EventKind(enum.Enum):
    DIRECT = "direct"
    API_GATEWAY_REST = "apigateway-rest"
    HTTP_API = "apigateway-http"
    FUNCTION_URL = "function-url"
    SQS = "sqs"


def classify(event: Any) -> EventKind:
    if not isinstance(event, dict):
        return EventKind.DIRECT
    records = event.get("Records")
    if isinstance(records, list) and (
        not records or all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records)
    ):
        return EventKind.SQS
    ctx = event.get("requestContext")
    if isinstance(ctx, dict):
        if event.get("version") == "2.0" and isinstance(ctx.get("http"), dict):
            domain = str(ctx.get("domainName", ""))
            return EventKind.FUNCTION_URL if ".lambda-url." in domain else EventKind.HTTP_API
        if "httpMethod" in event:
            return EventKind.API_GATEWAY_REST
    return EventKind.DIRECT


class HttpEvent:
    """API Gateway REST (v1), HTTP API (v2) and Function URL events: method and decoded body."""

    def __init__(self, event: dict[str, Any], kind: EventKind) -> None:
        self._event = event
        self.kind = kind

    @property
    def method(self) -> str:
        if self.kind is EventKind.API_GATEWAY_REST:
            return str(self._event.get("httpMethod", "")).upper()
        return str(self._event["requestContext"]["http"].get("method", "")).upper()

    @property
    def path(self) -> str:
        """The request path without the stage and trailing slashes: "/", "/embed", "/v1/embeddings".

        REST (v1) events give it without the stage. HTTP API (v2) events carry a named stage in rawPath
        ("/prod/embed"); the $default stage and Function URLs have none.
        """
        if self.kind is EventKind.API_GATEWAY_REST:
            raw = self._event.get("path")
        else:
            raw = self._event.get("rawPath") or self._event["requestContext"]["http"].get("path")
            stage = self._event["requestContext"].get("stage")
            if isinstance(raw, str) and isinstance(stage, str) and stage and stage != "$default":
                prefix = f"/{stage}"
                if raw == prefix or raw.startswith(prefix + "/"):
                    raw = raw[len(prefix) :]
        path = raw if isinstance(raw, str) else ""
        return "/" + path.strip("/")

    def header(self, name: str) -> str | None:
        """A request header, whatever its case (REST events keep the client's case, HTTP API v2 lowercases)."""
        headers = self._event.get("headers")
        if not isinstance(headers, dict):
            return None
        wanted = name.lower()
        for key, value in headers.items():
            if isinstance(key, str) and key.lower() == wanted and isinstance(value, str):
                return value
        return None

    def require_json(self) -> None:
        """415 unless the Content-Type is JSON (application/json or application/*+json); none at all is taken as JSON."""
        content_type = self.header("content-type")
        if content_type is None:
            return
        media = content_type.split(";", 1)[0].strip().lower()
        if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
            raise UnsupportedMediaTypeError(
                f"Content-Type {content_type!r} is not JSON; send the body as JSON with Content-Type: application/json"
            )

    @property
    def is_base64(self) -> bool:
        """isBase64Encoded as AWS sends it: a JSON boolean (the string "true" is taken too; anything else is false)."""
        flag = self._event.get("isBase64Encoded")
        return flag is True or (isinstance(flag, str) and flag.lower() == "true")

    def body(self, max_bytes: int) -> bytes:
        """The body bytes, base64-decoded when the event says so; 413 over `max_bytes`, checked before decoding."""
        body = self._event.get("body")
        if body is None:
            return b""
        if not isinstance(body, str):
            raise InvalidInputError("the HTTP body must be a string")
        if self.is_base64:  # n base64 characters hold 3n/4 bytes, less padding: checked before decoding
            size = len(body) * 3 // 4 - body[-2:].count("=")
            if size > max_bytes:
                raise PayloadTooLargeError(
                    f"the body has {size} bytes (base64-encoded: {len(body)}); the limit is {max_bytes} (MAX_BODY_BYTES)"
                )
            try:
                return base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidInputError("the body is marked isBase64Encoded but is not valid base64") from None
        return body.encode("utf-8", "surrogatepass")  # decode_json checks its size


class SqsRecord:
    """One SQS record as Lambda's event source mapping delivers it."""

    def __init__(self, record: dict[str, Any]) -> None:
        self._record = record

    @property
    def message_id(self) -> str:
        return str(self._record.get("messageId", ""))

    @property
    def message_group_id(self) -> str | None:
        """MessageGroupId of a FIFO queue's record; None for a standard queue."""
        attributes = self._record.get("attributes")
        group = attributes.get("MessageGroupId") if isinstance(attributes, dict) else None
        return group if isinstance(group, str) and group else None

    @property
    def body(self) -> str:
        body = self._record.get("body")
        if not isinstance(body, str):
            raise InvalidInputError("the SQS record has no string body")
        return body
