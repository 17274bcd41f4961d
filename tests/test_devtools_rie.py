"""The official RIE in front of awslambdaric, driven through devtools.rie with the fakes in tests/fakes/."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from devtools.rie import RieFunction, ensure_rie


@pytest.fixture(scope="module")
def rie_path() -> Path:
    return ensure_rie()


def _gone(pid: int, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_ensure_rie_is_cached_and_executable(rie_path: Path) -> None:
    assert rie_path.parts[-4:-2] == (".cache", "rie")
    assert os.access(rie_path, os.X_OK)
    assert ensure_rie() == rie_path


def test_invoke_goes_through_awslambdaric_and_process_tree_is_stopped(rie_path: Path) -> None:
    with RieFunction("tests.fakes.echo_handler.handler", timeout_s=5, rie_path=rie_path) as fn:
        first = fn.invoke({"inputs": "hello"})
        second = fn.invoke({"inputs": "again"})
        rie_pid = fn.pid
        logs = fn.wait_for_log(f"END RequestId: {second.body['aws_request_id']}")

    assert first.ok and first.status == 200
    assert first.body["event"] == {"inputs": "hello"}
    uuid.UUID(first.body["aws_request_id"])  # a real LambdaContext, filled by awslambdaric
    assert first.body["function_name"] == "test_function"
    assert 0 < first.body["remaining_ms"] <= 5000  # AWS_LAMBDA_FUNCTION_TIMEOUT reached the context
    assert second.body["pid"] == first.body["pid"]  # one runtime, loaded once, serving both
    assert second.body["aws_request_id"] != first.body["aws_request_id"]
    assert f"echo_handler got request {first.body['aws_request_id']}" in logs
    assert "INIT RTDONE(status: success)" in logs
    assert len(fn.init_durations_ms()) == 1
    assert _gone(rie_pid) and _gone(first.body["pid"])


def test_handler_exception_is_an_answer_and_the_runtime_keeps_serving(rie_path: Path) -> None:
    with RieFunction("tests.fakes.raises_in_handler.handler", timeout_s=5, rie_path=rie_path) as fn:
        results = [fn.invoke({"n": n}) for n in (1, 2)]

    for n, result in enumerate(results, start=1):
        assert result.status == 200 and not result.ok and not result.timed_out
        assert result.error_type == "FakeRequestError"
        assert result.error_message == f"bad request: {{'n': {n}}}"
        assert result.body["requestId"]
    assert len(fn.init_durations_ms()) == 1  # no re-init after a request failure


def test_exception_at_import_is_an_init_error_on_every_invoke(rie_path: Path) -> None:
    with RieFunction("tests.fakes.raises_in_init.handler", timeout_s=5, rie_path=rie_path) as fn:
        first = fn.invoke({})
        second = fn.invoke({})
        logs = fn.logs

    for result in (first, second):
        assert result.status == 502
        assert result.error_type == "FakeSetupError"
        assert result.error_message == "model bundle missing (raised at import)"
        assert result.body["requestId"] == ""
    assert "INIT RTDONE(status: error)" in logs
    assert logs.count("[ERROR] FakeSetupError: model bundle missing (raised at import)") == 2  # re-imported


def test_timeout_kills_the_runtime_and_the_next_invoke_reinits(rie_path: Path) -> None:
    with RieFunction("tests.fakes.slow_handler.handler", timeout_s=1, rie_path=rie_path) as fn:
        before = fn.invoke({"sleep_s": 0})
        timed_out = fn.invoke({"sleep_s": 30})
        after = fn.invoke({"sleep_s": 0})
        logs = fn.logs

    assert before.ok and before.body["served"] == 1
    assert timed_out.status == 200 and timed_out.timed_out and not timed_out.ok
    assert timed_out.body == "Task timed out after 1.00 seconds"
    assert timed_out.elapsed_s < 5
    assert after.ok
    assert after.body["pid"] != before.body["pid"] and after.body["served"] == 1  # fresh process, fresh state
    assert "Reset initiated: Timeout" in logs
    assert _gone(before.body["pid"])


def test_init_slower_than_the_timeout_times_out(rie_path: Path) -> None:
    with RieFunction("tests.fakes.slow_init.handler", env={"SLOW_INIT_S": "5"}, timeout_s=1,
                     rie_path=rie_path) as fn:
        result = fn.invoke({})

    assert result.timed_out and result.body == "Task timed out after 1.00 seconds"


def test_runtime_exit_during_invoke_is_a_502_and_the_next_invoke_reinits(rie_path: Path) -> None:
    with RieFunction("tests.fakes.exits_in_handler.handler", timeout_s=5, rie_path=rie_path) as fn:
        before = fn.invoke({})
        died = fn.invoke({"exit_code": 3})
        after = fn.invoke({})

    assert died.status == 502 and died.error_type == "Runtime.ExitError"
    assert died.error_message.endswith("Error: Runtime exited with error: exit status 3")
    assert after.ok and after.body["pid"] != before.body["pid"]
