"""The function behind a local HTTP endpoint, as ``sam local start-api`` gives one, without Docker.

    python -m devtools.serve --bundle build/model.bundle [--port 3000]      (what ``make serve`` runs)

Each HTTP request becomes a Function URL event (payload format 2.0, as Lambda builds it), is invoked through the
official runtime emulator and ``python -m awslambdaric handler.handler`` (devtools.rie), and the function's answer
becomes the HTTP response as a Function URL maps it:

- a response object {"statusCode", "headers", "body", "isBase64Encoded", "cookies"} is sent as it says;
- any other JSON value is sent as a 200 application/json body;
- a function error (errorType in the RIE's answer) or a timeout is a 502, as a Function URL answers it.

Any HTTP client works against it: ``curl``, the openai client with ``base_url=http://127.0.0.1:3000/v1``, a Text
Embeddings Inference client for /embed and /rerank. It binds 127.0.0.1 only; requests are answered one at a time
(the RIE runs one invoke at a time, like one Lambda execution environment).
"""

from __future__ import annotations

import argparse
import base64
import json
import signal
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from devtools.rie import InvokeResult, RieError, RieFunction

HANDLER = "handler.handler"
URL_ID = "localfunctionurl"  # the Function URL id in the event's domain name: <id>.lambda-url.<region>.on.aws
DOMAIN = f"{URL_ID}.lambda-url.us-east-1.on.aws"
LOCAL_CALLER = {  # requestContext.authorizer.iam of a SigV4-signed call; locally nobody signs
    "accessKey": "AKIALOCALSERVE0000000",
    "accountId": "123456789012",
    "callerId": "AIDALOCALSERVE0000000",
    "cognitoIdentity": None,
    "principalOrgId": None,
    "userArn": "arn:aws:iam::123456789012:user/local",
    "userId": "AIDALOCALSERVE0000000",
}
MAX_BODY_BYTES = 6 * 1024 * 1024  # a Function URL's request payload limit
_TEXT_TYPES = ("application/json", "text/", "application/xml", "application/x-www-form-urlencoded")


def function_url_event(
    method: str, target: str, headers: Mapping[str, str], body: bytes, *, source_ip: str = "127.0.0.1"
) -> dict[str, Any]:
    """The Function URL event Lambda would build for this HTTP request (payload format 2.0).

    Args:
        method: the HTTP method.
        target: the request target, path and query ("/v1/embeddings?x=1").
        headers: the request headers; names are lower-cased and repeated ones joined with ",", as Lambda does.
        body: the raw body; text content types are passed as text, anything else base64-encoded.
        source_ip: the caller's address.
    """
    url = urlsplit(target)
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        lowered[key] = f"{lowered[key]},{value}" if key in lowered else value
    now = datetime.now(UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": url.path or "/",
        "rawQueryString": url.query,
        "headers": {**lowered, "host": DOMAIN},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": URL_ID,
            "authentication": None,
            "authorizer": {"iam": dict(LOCAL_CALLER)},  # AuthType AWS_IAM, as template.yaml configures it
            "domainName": DOMAIN,
            "domainPrefix": URL_ID,
            "http": {
                "method": method.upper(),
                "path": url.path or "/",
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": lowered.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "pathParameters": None,
        "isBase64Encoded": False,
        "stageVariables": None,
    }
    if "cookie" in lowered:
        event["cookies"] = [c.strip() for c in lowered["cookie"].split(";") if c.strip()]
    if url.query:
        params: dict[str, str] = {}
        for key, value in parse_qsl(url.query, keep_blank_values=True):
            params[key] = f"{params[key]},{value}" if key in params else value
        event["queryStringParameters"] = params
    if body:
        text = _as_text(body, lowered.get("content-type", ""))
        if text is None:
            event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode("ascii"), True
        else:
            event["body"] = text
    return event


def _as_text(body: bytes, content_type: str) -> str | None:
    if not any(content_type.lower().startswith(t) for t in _TEXT_TYPES):
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def http_answer(result: InvokeResult) -> tuple[int, dict[str, str], bytes]:
    """What a Function URL sends for the function's answer: (status, headers, body bytes)."""
    if result.timed_out or result.error_type is not None or result.status != 200:
        return 502, {"Content-Type": "application/json"}, b'{"Message":"Internal Server Error"}'
    body = result.body
    if isinstance(body, dict) and "statusCode" in body:
        headers = {str(k): str(v) for k, v in (body.get("headers") or {}).items()}
        raw = body.get("body") or ""
        data = base64.b64decode(raw) if body.get("isBase64Encoded") else str(raw).encode("utf-8")
        return int(body["statusCode"]), headers, data
    return 200, {"Content-Type": "application/json"}, json.dumps(body).encode("utf-8")


class LocalServer:
    """An HTTP server on 127.0.0.1 that answers every request through `function` (a started RieFunction).

    Use as a context manager; ``url`` is where it listens::

        with RieFunction("handler.handler", env={"MODEL_BUNDLE": bundle}) as fn, LocalServer(fn) as server:
            openai.OpenAI(base_url=server.url + "/v1", api_key="local").embeddings.create(...)
    """

    def __init__(self, function: RieFunction, *, port: int = 0, log: bool = False) -> None:
        self.function = function
        self._log = log
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="devtools-serve", daemon=True)
        self._thread.start()

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def close(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._httpd.server_close()

    def answer(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> tuple[int, dict, bytes]:
        """Invoke the function with the Function URL event of one request; returns (status, headers, body)."""
        if len(body) > MAX_BODY_BYTES:
            return 413, {"Content-Type": "application/json"}, b'{"Message":"Request must be smaller than 6 MB"}'
        event = function_url_event(method, target, headers, body)
        try:
            result = self.function.invoke(event)
        except RieError as e:
            return 502, {"Content-Type": "application/json"}, json.dumps({"Message": str(e)}).encode()
        return http_answer(result)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                started = time.perf_counter()
                status, headers, data = server.answer(self.command, self.path, dict(self.headers.items()), body)
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                if server._log:
                    ms = (time.perf_counter() - started) * 1000
                    print(f"{self.command} {self.path} -> {status} ({ms:.1f} ms)", file=sys.stderr, flush=True)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per request is printed by _serve when asked

        return Handler


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True, help="the model bundle (MODEL_BUNDLE)")
    parser.add_argument("--port", type=int, default=3000, help="port on 127.0.0.1 (default 3000)")
    parser.add_argument("--timeout", type=int, default=60, help="the function timeout in seconds (default 60)")
    args = parser.parse_args(argv)
    env = {"MODEL_BUNDLE": str(args.bundle.resolve())}
    signal.signal(signal.SIGTERM, _interrupt)  # `kill PID` stops it as Ctrl-C does: the RIE is stopped too
    try:
        with RieFunction(HANDLER, env=env, timeout_s=args.timeout) as fn:
            server = LocalServer(fn, port=args.port, log=True)
            print(f"{HANDLER} on {args.bundle} at {server.url} (Function URL events through the official RIE)")
            print(f'  try: curl -s {server.url}/ -d \'{{"inputs": "hello"}}\'    Ctrl-C stops it', flush=True)
            try:
                server.serve_forever()
            except KeyboardInterrupt:
                pass
            finally:
                server.close()
    except RieError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
