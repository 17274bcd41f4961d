"""What every HTTP route is: the Route protocol, and the Reply a route shapes into its response body."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from runtime.errors import RequestError
from runtime.prediction import Prediction
from runtime.request import Limits, Request
from runtime.responses import ServedBy, timing


@dataclass(frozen=True)
class Reply:
    """A prediction and what it answers: all a route needs to shape its body."""

    request: Request
    prediction: Prediction
    served: ServedBy
    request_id: str
    cold: bool

    def timing(self) -> dict[str, Any]:
        return timing(self.served, self.prediction, request_id=self.request_id, cold=self.cold)


class Route(Protocol):
    paths: tuple[str, ...]  # the paths it answers
    tasks: tuple[str, ...]  # the bundle tasks it serves; () for every task
    example: str  # a minimal request body, shown when a body cannot be read

    def parse(self, payload: Any, limits: Limits) -> Request:
        """The decoded JSON body -> a checked Request. Raises InvalidInputError / PayloadTooLargeError."""
        ...

    def body(self, reply: Reply) -> Any:
        """The JSON-ready response body of a prediction."""
        ...

    def error_body(self, error: RequestError, request_id: str) -> Any:
        """The JSON-ready body of an error, in the shape this route's clients read."""
        ...
