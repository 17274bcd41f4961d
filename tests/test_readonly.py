"""The function runs from a read-only code tree, as Lambda runs /var/task, and writes nowhere but TMPDIR.

The project is copied into a temp dir made read-only (chmod -R a-w), HOME is an unwritable empty dir, cwd is the
copy, and TMPDIR is the one writable place. Root ignores permission bits, so when the test runs as root it also
runs the function in a private mount namespace (unshare -m) where every filesystem is remounted read-only except
TMPDIR: a write anywhere else fails there, as it would on Lambda. In both cases the code tree, HOME and everything
else under the test's temp dir are snapshotted (mode, size, mtime, SHA-256) before and after: any file created or
changed outside TMPDIR fails the test.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support import EVENTS, EXPECTED, ROOT

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="uses Linux mount namespaces and permission bits")

DRIVER = r"""
import json, os, pathlib, sys, tempfile
import handler
from runtime.errors import RequestError

class Context:
    aws_request_id = "readonly-1"
    function_name = "readonly"
    def get_remaining_time_in_millis(self):
        return 30_000

answers = {}
for path in sorted(pathlib.Path("events").glob("*.json")):
    event = json.loads(path.read_text(encoding="utf-8"))
    try:
        r = handler.handler(event, Context())
    except RequestError as e:
        answers[path.name] = type(e).__name__
        continue
    if "statusCode" in r:
        answers[path.name] = r["statusCode"]
    elif "batchItemFailures" in r:
        answers[path.name] = [f["itemIdentifier"] for f in r["batchItemFailures"]]
    else:
        answers[path.name] = "ok" if r.get("outputs") else r
env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HOME")}
print("RESULT " + json.dumps({"answers": answers, "env": env, "tempdir": tempfile.gettempdir()}))
"""

UNSHARE = ["unshare", "-m", "--propagation", "private"]  # a new mount namespace: its mounts never reach the host
# there, TMPDIR becomes a mount of its own (writable), then every other filesystem turns read-only
READ_ONLY_WORLD = (
    'mount --bind "$0" "$0" && mount -o remount,bind,ro / && mount -o remount,bind,ro /dev '
    '&& mount -o remount,bind,ro /dev/shm && exec "$@"'
)


def snapshot(top: Path, skip: Path) -> dict[str, Any]:
    """relative path -> (type and mode, size, mtime_ns, sha256) for everything under `top` but `skip`."""
    out: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d != skip]
        for name in dirnames + filenames:
            p = here / name
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else None
            out[str(p.relative_to(top))] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return out


def _make_read_only(top: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(top):
        for name in filenames + dirnames:
            p = Path(dirpath) / name
            p.chmod(p.stat().st_mode & ~0o222)
    top.chmod(top.stat().st_mode & ~0o222)


def _make_writable(top: Path) -> None:  # so pytest can clean up
    top.chmod(top.stat().st_mode | 0o200)
    for dirpath, dirnames, filenames in os.walk(top):
        for name in filenames + dirnames:
            p = Path(dirpath) / name
            p.chmod(p.stat().st_mode | 0o200)


WRITE_CALLS = "open,openat,creat,mkdir,mkdirat,rename,renameat,renameat2,unlink,unlinkat,rmdir,truncate,symlink,link"


def _strace_available() -> bool:
    if not shutil.which("strace"):
        return False
    return subprocess.run(["strace", "-qq", "-o", "/dev/null", "true"], capture_output=True).returncode == 0


def refused_writes(trace: Path) -> list[str]:
    """strace lines of write attempts that the read-only world refused, but Python's own bytecode cache."""
    out = []
    for line in trace.read_text().splitlines():
        if ("EROFS" in line or "EACCES" in line) and "__pycache__" not in line:
            if " open" in line and not any(flag in line for flag in ("O_WRONLY", "O_RDWR", "O_CREAT")):
                continue  # a read that was refused is not a write
            out.append(line.split(" ", 1)[-1])
    return out


def _private_read_only_world_available() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run([*UNSHARE, "sh", "-c", "mount -o remount,bind,ro /"], capture_output=True, timeout=30)
    return probe.returncode == 0


@pytest.fixture
def lambda_like(tmp_path: Path, tiny_bundle):
    """(task dir, home, tmpdir): the code and bundle read-only like /var/task, an unwritable HOME, a writable TMPDIR."""
    task, home, tmpdir = tmp_path / "var-task", tmp_path / "home", tmp_path / "tmp"
    task.mkdir()
    shutil.copy2(ROOT / "handler.py", task / "handler.py")
    shutil.copytree(ROOT / "runtime", task / "runtime", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(EVENTS, task / "events")
    shutil.copy2(tiny_bundle("bert"), task / "model.bundle")
    home.mkdir()
    tmpdir.mkdir()
    _make_read_only(task)
    _make_read_only(home)
    yield task, home, tmpdir
    _make_writable(task)
    _make_writable(home)


def test_the_function_answers_from_a_read_only_tree_and_writes_only_to_tmpdir(lambda_like, tmp_path: Path) -> None:
    task, home, tmpdir = lambda_like
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TMPDIR": str(tmpdir),
        "LAMBDA_TASK_ROOT": str(task),  # MODEL_BUNDLE defaults to $LAMBDA_TASK_ROOT/model.bundle
        "PYTHONPATH": str(task),
        "NUM_THREADS": "1",
        "LOG_LEVEL": "WARNING",
        # HF_HUB_OFFLINE, HF_HOME, XDG_CACHE_HOME... deliberately unset: the runtime must not need them
    }
    command = [sys.executable, "-c", DRIVER]
    trace, traced = tmpdir / "strace.txt", False
    if _private_read_only_world_available():  # else: chmod stops a non-root user; the snapshots below catch root
        if traced := _strace_available():  # also see writes that failed and were swallowed (a cache that gave up)
            command = ["strace", "-f", "-qq", "-o", str(trace), f"-etrace={WRITE_CALLS}", "-estatus=failed", *command]
        command = [*UNSHARE, "sh", "-c", READ_ONLY_WORLD, str(tmpdir), *command]
    elif os.geteuid() == 0:
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # root would write Python's own bytecode cache despite chmod
    before = snapshot(tmp_path, skip=tmpdir)
    run = subprocess.run(command, cwd=task, env=env, capture_output=True, text=True, timeout=300)
    after = snapshot(tmp_path, skip=tmpdir)

    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(next(line for line in run.stdout.splitlines() if line.startswith("RESULT "))[len("RESULT "):])
    want = {name: ("ok" if how == "direct" else answer) for name, (how, answer) in EXPECTED.items()}
    assert result["answers"] == want
    assert result["tempdir"] == str(tmpdir)
    assert result["env"]["HF_HUB_OFFLINE"] == "1"
    changed = sorted(set(before) ^ set(after) | {k for k in before.keys() & after.keys() if before[k] != after[k]})
    assert changed == [], f"written outside TMPDIR: {changed}"
    assert not any(p.name == "__pycache__" for p in task.rglob("*"))
    if traced:
        assert refused_writes(trace) == [], "writes refused outside TMPDIR (and swallowed)"


def test_a_write_outside_tmpdir_is_caught(lambda_like, tmp_path: Path) -> None:
    """The harness itself: a function that writes to its code dir or HOME fails (the protection can fail)."""
    task, home, tmpdir = lambda_like
    if not _private_read_only_world_available():
        pytest.skip("needs root and unshare -m")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "TMPDIR": str(tmpdir)}
    for target in (task / "cache.json", home / ".cache", tmp_path / "elsewhere"):
        code = f"open({str(target)!r}, 'w').write('x')"
        command = [*UNSHARE, "sh", "-c", READ_ONLY_WORLD, str(tmpdir), sys.executable, "-c", code]
        run = subprocess.run(command, cwd=task, env=env, capture_output=True, text=True, timeout=60)
        assert run.returncode != 0 and "Read-only file system" in run.stderr, (target, run.stderr[-500:])
        assert not target.exists()
    code = f"open({str(tmpdir / 'ok')!r}, 'w').write('x')"
    command = [*UNSHARE, "sh", "-c", READ_ONLY_WORLD, str(tmpdir), sys.executable, "-c", code]
    assert subprocess.run(command, cwd=task, env=env, timeout=60).returncode == 0
    assert (tmpdir / "ok").read_text() == "x"
