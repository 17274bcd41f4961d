"""Every event in events/ through the function as Lambda runs it: ``python -m devtools.demo --bundle FILE``.

What ``make demo`` runs after building the bundle. The official RIE and ``python -m awslambdaric handler.handler``
serve the bundle (devtools.rie); each event file is invoked in sorted order, and for each the demo prints what came
back (HTTP status, errorType, batchItemFailures), a short view of the outputs and the timing, then one summary
line: whether every event was answered as documented (devtools.expectations). Exit code 1 if one was not, or if
the function failed to start (its init error and log tail are printed).

The first invoke starts the runtime, so it carries the init (model load); the rest are warm. SQS results go to
the function log here (RESULTS_QUEUE_URL is not set); tests/test_sqs_end_to_end.py runs the queue path.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.expectations import EXPECTED, mismatch
from devtools.rie import REPO_ROOT, InvokeResult, RieError, RieFunction

EVENTS_DIR = REPO_ROOT / "events"
HANDLER = "handler.handler"


@dataclass
class DemoReport:
    """What was invoked; ``problems`` maps an event file to why it was not answered as documented."""

    events: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)
    init_error: str | None = None  # "ErrorType: message" when the function failed to start

    @property
    def ok(self) -> bool:
        return bool(self.events) and not self.problems

    def summary(self) -> str:
        if self.ok:
            return f"{len(self.events)} events, all answered as documented"
        if not self.events:
            return "0 events: nothing to invoke"
        if self.init_error is not None:
            return f"{len(self.events)} events, none answered: the function failed to start ({self.init_error})"
        why = "; ".join(f"{name}: {problem}" for name, problem in self.problems.items())
        return f"{len(self.events)} events, {len(self.problems)} not answered as documented: {why}"


def run_demo(
    bundle: Path, *, events_dir: Path = EVENTS_DIR, timeout_s: int = 120, write: Callable[[str], None] = print
) -> DemoReport:
    """Serve ``bundle`` with the real handler behind the RIE and invoke every ``events_dir/*.json`` in sorted order.

    Args:
        bundle: the model bundle (MODEL_BUNDLE of the function).
        events_dir: where the event files are.
        timeout_s: the function timeout; it bounds init as well as each invoke.
        write: where the report lines go.

    Returns:
        The report; an init error marks every event as not answered and stops the run.

    Raises:
        RieError: the RIE could not be fetched, started or reached.
    """
    bundle = bundle.resolve()
    names = sorted(p.name for p in events_dir.glob("*.json"))
    report = DemoReport(events=names)
    write(f"{HANDLER} on {bundle} through the official Lambda RIE + awslambdaric ({len(names)} events)")
    with RieFunction(HANDLER, env={"MODEL_BUNDLE": str(bundle)}, timeout_s=timeout_s) as fn:
        for index, name in enumerate(names, start=1):
            result = fn.invoke(json.loads((events_dir / name).read_text(encoding="utf-8")))
            problem = mismatch(name, result) if name in EXPECTED else "no documented answer in devtools/expectations.py"
            if problem is not None:
                report.problems[name] = problem
            write(f"\n[{index}/{len(names)}] {name}: {answer_line(result)}")
            if is_init_error(result):  # every later invoke would re-run the same failing init
                report.init_error = f"{result.error_type}: {result.error_message}"
                report.problems.update({rest: "the function failed to start" for rest in names[index - 1 :]})
                write("    the function failed to start; from its log:")
                for line in fn.logs.splitlines():
                    if line.startswith("[ERROR]") or "INIT RTDONE" in line:
                        write(f"    | {line}")
                break
            for line in detail_lines(result):
                write(f"    {line}")
            write(f"    {'as documented' if problem is None else 'NOT AS DOCUMENTED: ' + problem}")
    write("\n" + report.summary())
    return report


def is_init_error(result: InvokeResult) -> bool:
    """The RIE's answer when init (the handler module's import) failed: HTTP 502 and no request id."""
    return result.status == 502 and isinstance(result.body, dict) and result.body.get("requestId") == ""


def answer_line(result: InvokeResult) -> str:
    """HTTP status, errorType or batchItemFailures: what a caller sees first."""
    body = result.body
    if result.timed_out:
        return f"timed out ({body})"
    if result.error_type is not None:
        where = "init error" if is_init_error(result) else "raised"
        return f"{where}, errorType {result.error_type}: {result.error_message}"
    if result.status != 200:
        return f"RIE answered HTTP {result.status}: {result.raw[:200]!r}"
    if isinstance(body, dict) and "batchItemFailures" in body:
        failed = [item.get("itemIdentifier") for item in body["batchItemFailures"]]
        listed = f"batchItemFailures {failed}" if failed else "batchItemFailures [] (every record succeeded)"
        return f"{listed}; the other records' results went to the function log (no RESULTS_QUEUE_URL)"
    if isinstance(body, dict) and "statusCode" in body:
        payload = _json_or_none(body.get("body"))
        error = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(error, dict):
            return f"HTTP {body['statusCode']} {error.get('type')}: {error.get('message')}"
        return f"HTTP {body['statusCode']}"
    return "returned the envelope" if isinstance(body, dict) and "outputs" in body else f"returned {_clip(body)}"


def detail_lines(result: InvokeResult) -> list[str]:
    """Outputs and timing of an answer that carries the envelope (direct or HTTP 200); nothing otherwise."""
    body = result.body
    if isinstance(body, dict) and "statusCode" in body:
        body = _json_or_none(body.get("body"))
    if not isinstance(body, dict) or "outputs" not in body:
        return []
    task = (body.get("model") or {}).get("task", "")
    outputs = body["outputs"]
    # A list of inputs gives a list of outputs; one bare input gives one bare output (a dict for generation, a
    # list of floats or of labels otherwise).
    if task == "text-generation":
        many = isinstance(outputs, list)
    else:
        many = isinstance(outputs, list) and bool(outputs) and isinstance(outputs[0], list)
    views = [view_output(task, o) for o in (outputs if many else [outputs])]
    lines = [f"output {i}: {v}" for i, v in enumerate(views)] if many else [f"output: {views[0]}"]
    return lines + [view_timing(body.get("timing") or {})]


def view_output(task: str, output: Any) -> str:
    """A short view: dimension and first floats of an embedding, labels and scores, or the generated text."""
    if task == "feature-extraction" and isinstance(output, list):
        head = ", ".join(f"{x:.4f}" for x in output[:4])
        return f"embedding of {len(output)} floats [{head}, ...]"
    if task == "text-classification" and isinstance(output, list):
        return ", ".join(f"{d['label']} {d['score']:.3f}" for d in output[:5]) + (" ..." if len(output) > 5 else "")
    if task == "text-generation" and isinstance(output, dict):
        return f"generated {_clip(output.get('generated_text', ''), 100)}"
    return _clip(output)


def view_timing(timing: dict[str, Any]) -> str:
    """cold/warm, init total with its phases (cold only), request total with its stages, in ms."""
    stages = dict(timing.get("request_ms") or {})
    request = f"request {_ms(stages.pop('total', None))} ms ({_phases(stages)})"
    if not timing.get("cold_start"):
        return f"timing: warm; {request}"
    init = dict(timing.get("init_ms") or {})
    return f"timing: cold start; init {_ms(init.pop('total', None))} ms ({_phases(init)}); {request}"


def _phases(ms: dict[str, Any]) -> str:
    return ", ".join(f"{name} {_ms(value)}" for name, value in ms.items())


def _ms(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return str(value)
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _json_or_none(text: Any) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def _clip(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    text = repr(text) if isinstance(value, str) else text
    return text if len(text) <= limit else text[: limit - 3] + "..."


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bundle",
        type=Path,
        default=REPO_ROOT / "build" / "model.bundle",
        help="the model bundle to serve (default: build/model.bundle, what `make bundle` builds)",
    )
    parser.add_argument("--events", type=Path, default=EVENTS_DIR, help="folder of event files (default: events/)")
    parser.add_argument(
        "--timeout",
        type=int,
        default=120,
        help="function timeout in seconds; bounds init and each invoke (default: 120)",
    )
    args = parser.parse_args(argv)
    try:
        report = run_demo(args.bundle, events_dir=args.events, timeout_s=args.timeout)
    except RieError as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
