"""The function works with no network: tests block everything but loopback, and the runtime never asks the hub.

A Lambda function in a VPC without a NAT has no internet; one that quietly calls huggingface.co at init either hangs
until the timeout or fails only in that deployment. These tests pin both halves: the guard in tests/network_guard.py
(wired into conftest.py, so every test of the suite runs offline) really blocks, and init + predict make zero hub
HTTP calls even with offline mode switched off beforehand.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import network_guard
from support import FakeContext, new_function, load_event

OUTSIDE = ("10.255.255.1", 9)  # a non-routable private address: nothing there, and nothing is sent anyway


@pytest.fixture
def real_socket_spies(monkeypatch) -> list[str]:
    """Stand-ins for the real connect functions behind the guard: if the guard let a call through, it lands here."""
    reached: list[str] = []

    def spy(name: str):
        def fake(*args: Any, **kwargs: Any) -> Any:
            reached.append(name)
            raise ConnectionRefusedError(f"spy {name}: the guard let this call through")

        return fake

    for name in ("connect", "connect_ex", "create_connection"):
        monkeypatch.setitem(network_guard._REAL, name, spy(name))
    monkeypatch.setattr(socket, "getaddrinfo", spy("getaddrinfo"))
    return reached


def test_the_guard_is_installed_for_every_test() -> None:
    assert network_guard.installed(), "tests/conftest.py must import the autouse fixtures of tests/network_guard.py"


@pytest.mark.parametrize(
    "attempt",
    [
        lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).connect(OUTSIDE),
        lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).connect_ex(OUTSIDE),
        lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).connect(("8.8.8.8", 53)),
        lambda: socket.create_connection(OUTSIDE, timeout=5),
        lambda: socket.create_connection(("huggingface.co", 443), timeout=5),  # no DNS lookup either
        lambda: socket.socket(socket.AF_INET6, socket.SOCK_STREAM).connect(("2001:db8::1", 9, 0, 0)),
    ],
    ids=["connect", "connect_ex", "udp-connect", "create_connection", "create_connection-hostname", "ipv6"],
)
def test_a_connect_outside_loopback_raises_before_the_real_connect(real_socket_spies, attempt) -> None:
    assert network_guard.installed()  # never try a real outside connect without the guard
    t0 = time.perf_counter()
    try:
        with pytest.raises(network_guard.BlockedConnectionError) as info:
            attempt()
    except OSError as e:  # e.g. no IPv6 support in this sandbox: the socket itself cannot be made
        if "ipv6" in str(e).lower() or e.errno in (97, 93):
            pytest.skip(f"no IPv6 sockets here: {e}")
        raise
    assert time.perf_counter() - t0 < 0.1  # immediately: no SYN, no timeout
    assert isinstance(info.value, OSError) and "blocked in tests" in str(info.value)
    assert real_socket_spies == []  # neither the real connect nor a DNS lookup was reached
    assert len(network_guard.ATTEMPTS) == 1
    network_guard.ATTEMPTS.clear()  # blocked on purpose: do not fail this test for it


def test_loopback_stays_reachable() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=5) as client:
            peer, _ = server.accept()
            client.sendall(b"ping")
            assert peer.recv(4) == b"ping"
            peer.close()
    assert network_guard.ATTEMPTS == []


def test_an_attempt_that_the_code_swallows_still_fails_the_test(tmp_path: Path) -> None:
    (tmp_path / "test_swallows.py").write_text(
        "import socket\n"
        "def test_swallows():\n"
        "    try:\n"
        f"        socket.create_connection({OUTSIDE!r}, timeout=5)\n"
        "    except OSError:\n"
        "        pass  # what an 'offline fallback' does\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "network_guard", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 1, run.stdout[-2000:]
    assert "the test tried to reach the network: 10.255.255.1:9" in run.stdout


def _record_hub_calls(monkeypatch) -> list[str]:
    """Replace huggingface_hub's HTTP entry points (wherever they were imported) and the HTTP clients under them."""
    import httpx2
    import huggingface_hub
    import huggingface_hub._snapshot_download
    import huggingface_hub.constants
    import huggingface_hub.file_download
    import huggingface_hub.utils._http as hub_http
    import requests
    import urllib3.connectionpool

    calls: list[str] = []

    def recorder(name: str):
        def record(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            raise ConnectionError(f"{name} was called: the runtime tried to reach the Hugging Face Hub")

        return record

    targets = {
        hub_http.get_session: "get_session",
        hub_http.get_async_session: "get_async_session",
        hub_http.http_backoff: "http_backoff",
        hub_http.http_stream_backoff: "http_stream_backoff",
        huggingface_hub.file_download.hf_hub_download: "hf_hub_download",
        huggingface_hub.file_download.get_hf_file_metadata: "get_hf_file_metadata",
        huggingface_hub.file_download.http_get: "http_get",
        huggingface_hub._snapshot_download.snapshot_download: "snapshot_download",
    }
    loaded = [m for name, m in list(sys.modules.items()) if name.split(".")[0] in ("huggingface_hub", "transformers")]
    for module in loaded:
        for attr, value in list(vars(module).items()):
            if callable(value) and value in targets:
                monkeypatch.setattr(module, attr, recorder(targets[value]))
    for cls, attr in [(httpx2.Client, "send"), (httpx2.AsyncClient, "send"), (requests.Session, "send"),
                      (urllib3.connectionpool.HTTPConnectionPool, "urlopen")]:
        monkeypatch.setattr(cls, attr, recorder(f"{cls.__name__}.{attr}"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # the hub would go online if asked
    return calls


@pytest.mark.parametrize("which", ["tiny", "minilm"])
def test_init_and_predict_never_call_the_hub_even_with_offline_mode_unset(
    monkeypatch, tiny_bundle, minilm_bundle, which: str
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", "/nonexistent/hf-home")  # no cache to fall back on either
    calls = _record_hub_calls(monkeypatch)
    fn = new_function(tiny_bundle("bert") if which == "tiny" else minilm_bundle, NUM_THREADS="1")
    assert "outputs" in fn.handle({"inputs": "offline, as in a VPC with no NAT"}, FakeContext())
    assert fn.handle(load_event("function_url.json"), FakeContext())["statusCode"] == 200
    assert fn.handle(load_event("sqs_batch.json"), FakeContext())["batchItemFailures"]  # the poison record only
    assert calls == []
    assert network_guard.ATTEMPTS == []


def test_init_forces_offline_mode_in_the_environment(monkeypatch, tiny_bundle) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    new_function(tiny_bundle("bert"), NUM_THREADS="1")
    assert (os.environ["HF_HUB_OFFLINE"], os.environ["TRANSFORMERS_OFFLINE"]) == ("1", "1")

