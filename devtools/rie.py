"""Run a handler exactly as the Lambda image does: the official RIE in front of ``python -m awslambdaric``.

The RIE binary comes from the ``aws-sam-cli`` wheel on PyPI (``samcli/local/rapid/``), is checked against a
pinned sha256 and cached in the git-ignored ``.cache/rie/``. No Docker is needed: the RIE is a static Linux
binary that execs the runtime command given after its flags, like the image's ENTRYPOINT does.

Command line (flag names read from the binary; it ignores ``--help``, which it would exec as the runtime)::

    aws-lambda-rie --log-level info \\
        --runtime-interface-emulator-address 127.0.0.1:<port>   # HTTP invoke API; default 0.0.0.0:8080
        --runtime-api-address 127.0.0.1:<port>                  # Runtime API for awslambdaric; default :9001
        <python> -m awslambdaric <module.function>

Both addresses are passed so that the RIE binds 127.0.0.1 only and two functions can run side by side.

What the RIE (aws-sam-cli 1.170.0) does, observed with the fakes in ``tests/fakes/``:

- Init is lazy: the runtime process starts on the first invoke, which therefore carries the import time
  (``INIT REPORT(durationMs: ...)`` in the logs is right; ``Init Duration`` in ``REPORT`` lines is not).
- Success: HTTP 200, body = the handler's return value as JSON (``null`` for None). There is no
  ``X-Amz-Function-Error`` header, so errors are told apart by the body only.
- Handler exception: HTTP 200, body ``{"errorMessage", "errorType": <exception class name>, "requestId",
  "stackTrace"}``; the same runtime process keeps serving.
- Exception at import (init error): HTTP 502, body ``{"errorMessage", "errorType": <exception class name>,
  "requestId": "", "stackTrace"}``; logs show ``INIT RTDONE(status: error)``. Every later invoke re-runs the
  import (a fresh process) and fails the same way; the RIE stays up.
- Runtime process dies during an invoke (``os._exit``, OOM kill): HTTP 502, body ``{"errorType":
  "Runtime.ExitError", "errorMessage": "RequestId: ... Error: Runtime exited with error: exit status 3"}``.
- Timeout (``AWS_LAMBDA_FUNCTION_TIMEOUT`` seconds, default 300): HTTP 200 with the plain-text body
  ``Task timed out after 1.00 seconds`` (not JSON). The runtime is SIGKILLed; the next invoke starts a fresh
  process and re-runs init (module state is lost). The same budget bounds init: an import slower than the
  timeout gives the same body. Unlike real Lambda, there is no separate 10 s init limit.
- Invalid JSON payload: HTTP 200, ``errorType`` ``Runtime.UnmarshalError``.
- Invokes must not overlap: a second invoke while one is running panics the RIE (nil pointer in
  ``rapidcore.(*Server).Invoke``) and kills it. :meth:`RieFunction.invoke` serialises calls with a lock.
- Environment: the runtime gets the RIE's environment plus ``AWS_LAMBDA_FUNCTION_NAME=test_function``,
  ``AWS_LAMBDA_RUNTIME_API``, ``_HANDLER`` etc. ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and
  ``AWS_SESSION_TOKEN`` are forced to "" unless set, so a handler that calls AWS needs them in ``env``.
- Process tree: RIE (session leader here) -> runtime in its own process group. On SIGTERM the RIE SIGKILLs
  the runtime; :meth:`RieFunction.close` then kills anything left in the session.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

REPO_ROOT = Path(__file__).resolve().parents[1]

SAM_CLI_VERSION = "1.170.0"
# sha256 of aws_sam_cli-1.170.0-py3-none-any.whl as served by PyPI; both RIE binaries are inside it.
SAM_CLI_WHEEL_SHA256 = "24ebaf5ecba38dc1758089968cb89ab61e124b84e92a344fc7a2771a47f4d0bf"

INVOKE_PATH = "/2015-03-31/functions/function/invocations"
_TIMEOUT_PREFIX = b"Task timed out after"
# Passed through from this process when inherit_env=False; everything else must be given in env.
_BASE_ENV_KEYS = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")


class RieError(RuntimeError):
    """The RIE could not be fetched, started or reached (not a function error: those are InvokeResults)."""


def ensure_rie(cache_dir: Path | None = None) -> Path:
    """Return the path of the RIE binary for this machine, downloading it once.

    Args:
        cache_dir: where binaries are cached; default ``<repo>/.cache/rie`` (git-ignored).

    Returns:
        Path of an executable ``aws-lambda-rie-<arch>`` for ``platform.machine()``.

    Raises:
        RieError: unsupported machine, ``pip download`` failed, or the wheel's sha256 is not the pinned one.
    """
    arch = _rie_arch()
    cache_dir = (cache_dir or REPO_ROOT / ".cache" / "rie") / SAM_CLI_VERSION
    binary = cache_dir / f"aws-lambda-rie-{arch}"
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary

    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary",
            ":all:",
            "--disable-pip-version-check",
            "--quiet",
            f"aws-sam-cli=={SAM_CLI_VERSION}",
            "-d",
            tmp,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = list(Path(tmp).glob("aws_sam_cli-*.whl"))
        if done.returncode != 0 or len(wheels) != 1:
            raise RieError(
                f"`{' '.join(cmd)}` failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}; "
                "the RIE comes from PyPI, check that it is reachable"
            )
        digest = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
        if digest != SAM_CLI_WHEEL_SHA256:
            raise RieError(
                f"{wheels[0].name} has sha256 {digest}, expected {SAM_CLI_WHEEL_SHA256}; "
                "refusing to run it (update SAM_CLI_WHEEL_SHA256 only with the version)"
            )
        partial = Path(tmp) / binary.name
        with zipfile.ZipFile(wheels[0]) as wheel, partial.open("wb") as out:
            shutil.copyfileobj(wheel.open(f"samcli/local/rapid/{binary.name}"), out)
        partial.chmod(0o755)
        os.replace(partial, binary)  # atomic: a concurrent run never sees half a binary
    return binary


def _rie_arch() -> str:
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        return "x86_64"
    if machine in ("aarch64", "arm64"):
        return "arm64"
    raise RieError(f"no RIE build for machine {platform.machine()!r} (aws-sam-cli ships x86_64 and arm64)")


@dataclass(frozen=True)
class InvokeResult:
    """One answer of the RIE.

    ``body`` is the parsed JSON, or the text when the body is not JSON (the timeout answer).
    """

    status: int
    body: Any
    raw: bytes
    elapsed_s: float

    @property
    def timed_out(self) -> bool:
        return self.raw.startswith(_TIMEOUT_PREFIX)

    @property
    def error_type(self) -> str | None:
        """``errorType`` of a handler exception, init error or runtime exit; None otherwise."""
        if isinstance(self.body, dict) and isinstance(self.body.get("errorType"), str):
            return self.body["errorType"]
        return None

    @property
    def error_message(self) -> str | None:
        if self.error_type is None:
            return None
        return self.body.get("errorMessage")

    @property
    def ok(self) -> bool:
        """The handler returned normally (HTTP 200, no errorType, not a timeout)."""
        return self.status == 200 and not self.timed_out and self.error_type is None


class RieFunction:
    """The RIE plus ``python -m awslambdaric <handler>`` as child processes, bound to 127.0.0.1.

    Use as a context manager; on exit the whole process tree is stopped, even when the body raised::

        with RieFunction("handler.handler", env={"MODEL_BUNDLE": str(bundle)}, timeout_s=60) as fn:
            result = fn.invoke({"inputs": "hello"})
            assert result.ok, (result.body, fn.logs)

    Args:
        handler: ``module.function`` as in the image's CMD, imported from ``cwd``.
        env: extra environment for the runtime (MODEL_BUNDLE, AWS credentials, ...).
        timeout_s: the function timeout, sent as ``AWS_LAMBDA_FUNCTION_TIMEOUT``.
        cwd: the task root: the directory ``handler`` is imported from; also ``LAMBDA_TASK_ROOT``.
        python: interpreter that runs awslambdaric; default this one (the venv's).
        inherit_env: start from this process's whole environment instead of PATH/HOME/LANG/... only.
        log_level: the RIE's own log level (its ``INIT``/``INVOKE`` lines need "info" or lower).
        rie_path: the RIE binary; default :func:`ensure_rie`.
        startup_timeout_s: how long to wait for the RIE to accept connections.
    """

    def __init__(
        self,
        handler: str,
        *,
        env: Mapping[str, str] | None = None,
        timeout_s: int = 30,
        cwd: Path = REPO_ROOT,
        python: str = sys.executable,
        inherit_env: bool = False,
        log_level: str = "info",
        rie_path: Path | None = None,
        startup_timeout_s: float = 10.0,
    ) -> None:
        self.handler = handler
        self.timeout_s = timeout_s
        self.cwd = Path(cwd)
        self._python = python
        self._env = dict(env or {})
        self._inherit_env = inherit_env
        self._log_level = log_level
        self._rie_path = rie_path
        self._startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._log_path: Path | None = None
        self._final_logs: str | None = None
        self._lock = threading.Lock()
        self.port: int | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the RIE and wait until it accepts connections (the runtime itself starts on first invoke)."""
        if self._proc is not None:
            raise RieError(f"RieFunction({self.handler!r}) is already started (pid {self._proc.pid})")
        rie = self._rie_path or ensure_rie()
        self.port, api_port = _free_port(), _free_port()
        env = dict(os.environ) if self._inherit_env else {k: os.environ[k] for k in _BASE_ENV_KEYS if k in os.environ}
        env.update({"AWS_LAMBDA_FUNCTION_TIMEOUT": str(self.timeout_s), "LAMBDA_TASK_ROOT": str(self.cwd)})
        env.update(self._env)
        cmd = [
            str(rie),
            "--log-level",
            self._log_level,
            "--runtime-interface-emulator-address",
            f"127.0.0.1:{self.port}",
            "--runtime-api-address",
            f"127.0.0.1:{api_port}",
            self._python,
            "-m",
            "awslambdaric",
            self.handler,
        ]
        self._tmp = tempfile.TemporaryDirectory(prefix="rie-")
        self._log_path = Path(self._tmp.name) / "function.log"
        self._final_logs = None
        with self._log_path.open("wb") as log:
            # New session: the RIE leads it, so close() can find every process it spawned.
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.close()
            raise

    def _wait_ready(self) -> None:
        proc = self._proc
        if proc is None:
            raise RieError(f"RieFunction({self.handler!r}) is not started; there is no RIE to wait for")
        deadline = time.monotonic() + self._startup_timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RieError(
                    f"the RIE exited with code {proc.returncode} before accepting connections; "
                    f"log:\n{self.logs[-4000:]}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RieError(
            f"the RIE did not listen on 127.0.0.1:{self.port} within {self._startup_timeout_s} s; "
            f"log:\n{self.logs[-4000:]}"
        )

    def close(self) -> None:
        """Stop the RIE and every process of its session; keep the logs readable. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                _signal_group(proc.pid, signal.SIGTERM)  # the RIE SIGKILLs the runtime itself
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    _signal_group(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)
            # The runtime lives in its own process group; anything left in the session goes now.
            for pid in _session_members(proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self._tmp is not None:
            self._final_logs = self.logs
            self._tmp.cleanup()
            self._tmp = None
            self._log_path = None

    # -- use -----------------------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """PID of the RIE process (the runtime is its child; its pid is not known until it runs)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{INVOKE_PATH}"

    def invoke(self, event: Any, *, timeout: float | None = None) -> InvokeResult:
        """POST ``event`` as JSON to the RIE and return its answer; function errors are results, not raises.

        Args:
            event: any JSON-serialisable payload.
            timeout: HTTP timeout in seconds; default twice the function timeout plus 10 s (init and invoke
                each get the function timeout in the RIE).

        Raises:
            RieError: the RIE is not running, or did not answer within ``timeout``.
        """
        if self._proc is None:
            raise RieError(f"RieFunction({self.handler!r}) is not started; use it as a context manager")
        data = json.dumps(event).encode()
        request = urllib.request.Request(
            self.url, data=data, method="POST", headers={"Content-Type": "application/json"}
        )
        http_timeout = timeout if timeout is not None else 2 * self.timeout_s + 10
        with self._lock:  # overlapping invokes crash the RIE
            start = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=http_timeout) as response:
                    status, raw = response.status, response.read()
            except urllib.error.HTTPError as error:  # 502 for init errors and runtime exits
                status, raw = error.code, error.read()
            except (urllib.error.URLError, OSError) as error:
                alive = "running" if self._proc is not None and self._proc.poll() is None else "exited"
                raise RieError(
                    f"invoke of {self.handler!r} at {self.url} failed: {error} (RIE {alive}); "
                    f"log tail:\n{self.logs[-4000:]}"
                ) from error
            elapsed = time.perf_counter() - start
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", errors="replace")
        return InvokeResult(status=status, body=body, raw=raw, elapsed_s=elapsed)

    @property
    def logs(self) -> str:
        """Everything the RIE and the runtime wrote to stdout/stderr so far, interleaved as written."""
        if self._log_path is None:
            return self._final_logs or ""
        return self._log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, *, timeout_s: float = 5.0) -> str:
        """Wait until ``text`` appears in the logs; return the logs. Raises RieError on timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            logs = self.logs
            if text in logs:
                return logs
            if time.monotonic() > deadline:
                raise RieError(f"{text!r} not in the function logs after {timeout_s} s; log tail:\n{logs[-4000:]}")
            time.sleep(0.02)

    def init_durations_ms(self) -> list[float]:
        """Durations of every init so far (from ``INIT REPORT`` lines): one per (re)started runtime."""
        return [float(m) for m in re.findall(r"INIT REPORT\(durationMs: ([0-9.]+)\)", self.logs)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _session_members(sid: int) -> list[int]:
    """PIDs whose session id is ``sid`` (Linux /proc; the RIE is Linux-only anyway)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited while we looked
        # After "pid (comm)": state ppid pgrp session ...
        if int(fields[3]) == sid:
            members.append(int(stat.parent.name))
    return members
