"""Typed errors of the runtime.

ServingError                      base: everything the function raises on purpose
├── BundleError                   the bundle file cannot be used (raised at init: fatal)
│   ├── BundleNotFoundError       no file at MODEL_BUNDLE, or it is a directory
│   ├── NotABundleError           wrong magic: another kind of file (a pickle, a zip, text)
│   ├── BundleVersionError        a format version this runtime does not read
│   ├── BundleCorruptError        truncated, bad header or manifest field, or content hash mismatch
│   └── BundlePinError            intact, but not the bundle MODEL_BUNDLE_SHA256 pins
└── RequestError                  one request was wrong: answered, the process keeps serving
    ├── InvalidInputError         400: bad JSON, missing/ill-typed "inputs"
    │   └── UnprocessableInputError 422: a well-formed input this model cannot take (fill-mask: no mask token)
    ├── RouteNotFoundError        404: an HTTP path this function has no route for
    ├── MethodNotAllowedError     405: an HTTP method other than POST
    ├── UnsupportedMediaTypeError 415: an HTTP body whose Content-Type is not JSON
    ├── PayloadTooLargeError      413: over a size limit (body bytes, characters, items)
    │   └── InputTooLongError     413: over the model's token limit, "truncate": false (errorType PayloadTooLargeError)
    ├── InvalidParametersError    422: valid JSON, but a parameter is unknown or out of range
    └── InternalError             500: an unexpected failure; the caller gets the request id, the log the trace

Direct invokes raise RequestError subclasses so that the caller sees the class name as `errorType`
(Step Functions can catch it by name); HTTP triggers turn them into a status code (runtime/responses.py renders
both); SQS records that raise one are reported in batchItemFailures.
"""

from __future__ import annotations

import logging


class ServingError(Exception):
    """Base class of every error this package raises on purpose."""


class BundleError(ServingError):
    """The bundle cannot be used; the function cannot start."""


class BundleNotFoundError(BundleError):
    pass


class NotABundleError(BundleError):
    pass


class BundleVersionError(BundleError):
    pass


class BundleCorruptError(BundleError):
    pass


class BundlePinError(BundleError):
    """The bundle is intact but its SHA-256 is not the one MODEL_BUNDLE_SHA256 pins (replaced, e.g. in a layer)."""


class RequestError(ServingError):
    """A request was wrong; `status` is the HTTP status it is answered with, `error_type` the name callers see."""

    status: int = 400

    @property
    def error_type(self) -> str:
        return type(self).__name__

    def describe(self) -> str:
        """ "ErrorType: message", as the log line and the CLI show it."""
        return f"{self.error_type}: {self}"


class InvalidInputError(RequestError):
    status = 400


class UnprocessableInputError(InvalidInputError):
    """Valid text that this model cannot answer (a fill-mask input without the model's mask token)."""

    status = 422


class RouteNotFoundError(RequestError):
    status = 404


class MethodNotAllowedError(RequestError):
    status = 405


class UnsupportedMediaTypeError(RequestError):
    status = 415


class PayloadTooLargeError(RequestError):
    status = 413


class InputTooLongError(PayloadTooLargeError):
    """An input over the model's token limit with "truncate": false. `index` is its place in the list the task
    was given; the predictor moves it to the request's own numbering (passes may regroup inputs)."""

    def __init__(self, index: int, tokens: int, limit: int, part: str = "") -> None:
        self.index, self.tokens, self.limit, self.part = index, tokens, limit, part
        super().__init__(
            f'"inputs"[{index}]{part} has {tokens} tokens; the limit is {limit} (the model\'s max length); '
            'shorten it, or send "truncate": true to cut it'
        )

    @property
    def error_type(self) -> str:
        return "PayloadTooLargeError"  # the name callers already catch

    def at(self, index: int) -> InputTooLongError:
        return InputTooLongError(index, self.tokens, self.limit, self.part)


class InvalidParametersError(RequestError):
    status = 422


class InternalError(RequestError):
    status = 500


def as_request_error(error: Exception, request_id: str, logger: logging.Logger) -> RequestError:
    """A RequestError as it is; anything else is logged with its trace and becomes an InternalError without internals."""
    if isinstance(error, RequestError):
        return error
    logger.error("internal error", exc_info=error, extra={"fields": {"request_id": request_id}})
    return InternalError(f"internal error while answering request {request_id}; the function's log has the details")
