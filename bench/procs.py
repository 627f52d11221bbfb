"""Process plumbing for the suite: /proc readings, free ports, pinned server processes.

Everything measured about a server is read from /proc: resident memory (VmRSS), user and
system CPU ticks (utime, stime of /proc/PID/stat: all threads, so Node's helper threads
count too), open descriptors; the busy time of a core comes from /proc/stat. A server is
started under ``taskset -c CORE`` (taskset execs, so the pid is the server's own) and
stopped by that pid only.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CLK_TCK",
    "CpuTimes",
    "ServerProcess",
    "core_busy_seconds",
    "core_times",
    "cpu_times",
    "descendants",
    "fd_count",
    "free_port",
    "raise_open_files",
    "rss_kib",
    "start_ticks",
    "wait_quiet",
]

CLK_TCK = os.sysconf("SC_CLK_TCK")


def raise_open_files() -> int:
    """Let this process (and every child it starts) open as many files as the hard limit
    allows, and return that limit: a benchmark holds one socket per connection."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """User and system CPU seconds of a process."""

    user: float
    system: float

    @property
    def total(self) -> float:
        """User + system seconds."""
        return self.user + self.system

    def __sub__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(self.user - other.user, self.system - other.system)


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (VmRSS of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_times(pid: int) -> CpuTimes:
    """CPU seconds consumed so far by ``pid`` (fields 14 and 15 of /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return CpuTimes(int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK)


def start_ticks(pid: int) -> int:
    """When ``pid`` started (field 22 of /proc/PID/stat, clock ticks since boot).

    With the pid it names one process for good: a pid reused later has another start.
    """
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def descendants(pid: int) -> list[int]:
    """Every living process below ``pid`` (children, their children, ...), by /proc scan."""
    parent_of: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # gone meanwhile
            continue
        parent_of[int(entry)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    out: list[int] = []
    frontier = {pid}
    for _ in range(64):  # a process tree is shallow; the bound only guards the loop
        nxt = {child for child, parent in parent_of.items() if parent in frontier}
        if not nxt:
            break
        out += nxt
        frontier = nxt
    return sorted(out)


def fd_count(pid: int) -> int:
    """Open file descriptors of ``pid``."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def core_busy_seconds(core: int) -> float:
    """Busy (not idle, not iowait) seconds of CPU ``core`` so far, all processes."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            v = [int(x) for x in line.split()[1:]]
            return (sum(v[:8]) - v[3] - v[4]) / CLK_TCK
    raise RuntimeError(f"no cpu{core} in /proc/stat")


CORE_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def core_times(core: int) -> dict[str, float]:
    """Seconds CPU ``core`` spent so far in each state of /proc/stat (``CORE_FIELDS``).

    Two of them are counted in its busy time but in no process's: ``softirq`` (mostly the
    kernel's own work on network traffic, loopback's too) and ``steal`` (the hypervisor
    ran something else: other machines on the host).
    """
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            values = [int(x) / CLK_TCK for x in line.split()[1 : 1 + len(CORE_FIELDS)]]
            return dict(zip(CORE_FIELDS, values, strict=True))
    raise RuntimeError(f"no cpu{core} in /proc/stat")


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_quiet(cores: tuple[int, ...], timeout: float, busy: float = 0.2) -> float:
    """Wait (bounded) until every core in ``cores`` is under ``busy`` over 0.5 s.

    The machine may be shared: a run that starts while something else hogs a core is
    skewed, so each starts on a quiet machine if it can. Returns the time waited.
    """
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        before = [core_busy_seconds(c) for c in cores]
        await asyncio.sleep(0.5)
        after = [core_busy_seconds(c) for c in cores]
        if all((a - b) / 0.5 < busy for a, b in zip(after, before, strict=True)):
            break
    return time.monotonic() - start


class ServerProcess:
    """A server under test: started pinned to a core, stopped by its own pid."""

    def __init__(
        self,
        argv: list[str],
        port: int,
        core: int | None,
        cwd: str,
        log: Path,
        admin_port: int | None = None,
    ) -> None:
        self.port = port
        self.admin_port = admin_port  # presenced's admin HTTP port, when the suite chose it
        self.log = log
        pinned = ["taskset", "-c", str(core), *argv] if core is not None else argv
        self._log_file = log.open("wb")
        self.proc = subprocess.Popen(
            pinned,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        self.pid = self.proc.pid

    async def wait_listening(self, timeout: float = 30.0) -> None:
        """Wait (bounded) until the port (and the admin port, if known) accept TCP."""
        deadline = time.monotonic() + timeout
        ports = [self.port] + ([self.admin_port] if self.admin_port is not None else [])
        for port in ports:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log}")
                try:
                    _r, w = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"port {port} not listening after {timeout} s") from None
                    await asyncio.sleep(0.05)
                else:
                    w.close()
                    await w.wait_closed()
                    break

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc.poll() is None

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` s; by pid only."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if self.proc.poll() is None:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log_file.close()
