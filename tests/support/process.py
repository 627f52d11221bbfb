"""What every server a test suite starts shares: its own temporary directory, its process
handle, and ending it (politely, then by force; every wait bounded, only our own process)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["ServerProcess"]


class ServerProcess:
    """A server process of ours, with a temporary directory for its files."""

    def __init__(self, prefix: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        self.proc: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        """Terminate and wait (bounded); kill if it does not go."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: the server vanishes without a goodbye."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None

    def cleanup(self) -> None:
        """Stop it and remove its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
