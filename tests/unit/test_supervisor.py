"""The native stack's supervisor (genobase/stack.py), with a stand-in service: real processes, no stack.

A service that dies is started again and the restart counted (the restarts file that ``genobase
status`` reads, and GENOBASE_PROCESS_RESTARTS given to the new process); ``stop`` ends it for good;
its log is owner-only from its first byte.
"""

from __future__ import annotations

import os
import signal
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from genobase import stack
from shared.runtime.polling import poll_until

STAND_IN = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
with open(os.environ["STAND_IN_SEEN"], "a") as seen:
    seen.write(f"{os.getpid()} {os.environ.get('GENOBASE_PROCESS_RESTARTS', '-')}\\n")
print("started", flush=True)
while True:
    time.sleep(0.1)
"""


@pytest.fixture
def processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[stack.ServiceProcesses]:
    package = tmp_path / "lib" / "gb_stand_in"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "main.py").write_text(STAND_IN)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "lib"))
    monkeypatch.setenv("STAND_IN_SEEN", str(tmp_path / "seen"))
    processes = stack.ServiceProcesses(tmp_path / "run", {}, module_template="gb_stand_in.main")
    yield processes
    processes.stop_all()


def seen(processes: stack.ServiceProcesses) -> list[tuple[int, str]]:
    path = Path(os.environ["STAND_IN_SEEN"])
    lines = path.read_text().split("\n") if path.exists() else []
    return [(int(pid), restarts) for pid, restarts in (line.split() for line in lines if line)]


def wait(condition: Callable[[], object], timeout: float = 15) -> None:
    poll_until(lambda: bool(condition()), timeout=timeout, interval=0.05, what="the condition")


def test_a_service_that_dies_is_restarted_and_counted(processes: stack.ServiceProcesses) -> None:
    first = processes.start("parser")
    wait(lambda: len(seen(processes)) == 1)
    assert seen(processes) == [(first, "0")] and processes.restarts("parser") == 0
    for crash in (1, 2):
        previous = processes.pid("parser")
        assert previous is not None
        os.kill(previous, signal.SIGKILL)
        wait(lambda previous=previous: processes.pid("parser") not in (None, previous))  # type: ignore[misc]
        assert processes.restarts("parser") == crash
        wait(lambda crash=crash: len(seen(processes)) == crash + 1)  # type: ignore[misc]
        assert seen(processes)[-1] == (processes.pid("parser"), str(crash))  # the gauge's value, given to it
    assert processes.start("parser") == processes.pid("parser")  # `up` again: nothing new started


def test_stop_ends_the_service_for_good(processes: stack.ServiceProcesses) -> None:
    processes.start("parser")
    wait(lambda: len(seen(processes)) == 1)
    assert processes.supervisor("parser") is not None
    processes.stop("parser", sig=signal.SIGKILL)  # what the fault tests do to crash a service
    assert processes.pid("parser") is None and processes.supervisor("parser") is None
    time.sleep(1.5)  # longer than the first restart's wait
    assert processes.pid("parser") is None and len(seen(processes)) == 1
    assert processes.running_instances() == []
    processes.start("parser")  # and `up` brings it back, counting from zero
    assert processes.pid("parser") is not None and processes.restarts("parser") == 0


def test_a_process_with_a_failpoint_is_left_down_when_it_dies(processes: stack.ServiceProcesses) -> None:
    pid = processes.start("parser", {"GENOBASE_FAILPOINT": "nowhere"})
    assert processes.supervisor("parser") is None
    os.kill(pid, signal.SIGKILL)
    wait(lambda: processes.pid("parser") is None)
    time.sleep(1.0)
    assert processes.pid("parser") is None


def test_logs_are_owner_only_from_the_first_byte(processes: stack.ServiceProcesses) -> None:
    processes.run_dir.mkdir(parents=True)
    old = processes.log_file("parser-2")
    old.write_text("from an older version\n")
    old.chmod(0o644)
    processes.start("parser")
    processes.start("parser-2")
    wait(lambda: b"started" in processes.log_file("parser").read_bytes())
    for name in ("parser", "parser-2"):
        assert stat.S_IMODE(processes.log_file(name).stat().st_mode) == 0o600, name


def test_the_log_is_created_owner_only_whatever_the_umask() -> None:
    path = Path(f"/tmp/gb-log-{os.getpid()}-{time.monotonic_ns()}.log")
    previous = os.umask(0)
    try:
        fd = stack.open_private_log(path)
        os.close(fd)
    finally:
        os.umask(previous)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        path.unlink()
