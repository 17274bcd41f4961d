"""HTTP routes: the request and response shape an API Gateway or Function URL event speaks, chosen by its path.

    /, /predict      {"inputs", "parameters"} -> {"outputs", "model", "timing"}      routes/inference.py
    /embed, /rerank  Text Embeddings Inference's shapes                             routes/tei.py
    /v1/embeddings   OpenAI's embeddings shape                                      routes/openai_embeddings.py
    /v1/chat/completions, /v1/completions   OpenAI's generation shapes              routes/openai_completions.py

Direct invokes and SQS records always speak the first. A route parses the decoded JSON body into a Request, shapes
the Prediction into its body, and renders errors as its clients read them. A bundle has the routes of its task; any
other path is a 404 that lists them.
"""

from __future__ import annotations

from runtime.errors import RouteNotFoundError
from runtime.routes.inference import InferenceRoute
from runtime.routes.openai_completions import OpenAIChatCompletions, OpenAICompletions
from runtime.routes.openai_embeddings import OpenAIEmbeddings
from runtime.routes.route import Reply, Route
from runtime.routes.tei import TeiEmbed, TeiRerank

__all__ = ["ROUTES", "Reply", "Route", "Router"]

ROUTES: tuple[Route, ...] = (
    InferenceRoute(),
    TeiEmbed(),
    TeiRerank(),
    OpenAIEmbeddings(),
    OpenAIChatCompletions(),
    OpenAICompletions(),
)


class Router:
    """The routes a bundle of `task` answers, by path."""

    def __init__(self, task: str) -> None:
        self.task = task
        self.routes: dict[str, Route] = {path: r for r in ROUTES if not r.tasks or task in r.tasks for path in r.paths}
        self.default: Route = self.routes["/"]  # renders errors that come before a route is known

    def find(self, path: str) -> Route:
        """The route of `path` (without stage or trailing slash). Raises RouteNotFoundError listing the routes."""
        route = self.routes.get(path)
        if route is not None:
            return route
        known = ", ".join(self.routes)
        other = next((r for r in ROUTES if path in r.paths), None)
        if other is not None:
            raise RouteNotFoundError(
                f"{path} is for {' or '.join(other.tasks)} models and this one does {self.task}; "
                f"its routes are: {known} (POST)"
            )
        raise RouteNotFoundError(f"no route {path}; this function's routes are: {known} (POST)")
