"""File locks with the holder's pid: one writer per run folder and per feature cache.

`PidLock(path).acquire()` takes an exclusive `fcntl.flock` on `path` and writes its pid into
it. The kernel drops the lock when the holder dies, so a lock file left by a killed process
(a pid that no longer runs) is taken over, with a message naming the dead pid. A live holder
gives `LockedError` naming its pid, or, with `wait=True`, is waited for.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

# locks this process holds, by path: taking one again (a second CLI run in the same process,
# as tests do) hands over the open lock rather than blocking on itself
_HELD: dict[str, PidLock] = {}


class LockedError(Exception):
    """Another live process holds the lock; the message names the file and its pid."""


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:  # a killed child not yet reaped is a zombie: it holds nothing
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _read_pid(fd: int) -> int | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 64).decode("ascii", "replace").strip()
        return int(text.split()[0]) if text else None
    except (OSError, ValueError, IndexError):
        return None


class PidLock:
    """An exclusive lock on `path` holding this process's pid (see the module docstring)."""

    def __init__(self, path: Path, what: str = "") -> None:
        self.path = Path(path)
        self.what = what or str(self.path.parent)
        self.fd: int | None = None

    def holder(self) -> int | None:
        """The pid written in the lock file (None when there is none)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return None
        try:
            return _read_pid(fd)
        finally:
            os.close(fd)

    def acquire(
        self,
        wait: bool = False,
        poll_s: float = 0.2,
        on_wait: Callable[[int | None], None] | None = None,
    ) -> PidLock:
        """Take the lock; a live holder raises LockedError, or with `wait` is waited for."""
        if self.fd is not None:
            return self
        key = os.path.abspath(self.path)
        earlier = _HELD.get(key)
        if earlier is not None and earlier.fd is not None:
            self.fd, earlier.fd = earlier.fd, None
            _HELD[key] = self
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                pid = _read_pid(fd)
                if not wait:
                    os.close(fd)
                    alive = pid is not None and pid_alive(pid)
                    who = f"pid {pid}" if alive else f"processes left by pid {pid}"
                    raise LockedError(
                        f"{self.what} is in use by {who} (lock {self.path}); "
                        "wait for it to end or stop it first"
                    ) from None
                if not told and on_wait is not None:
                    on_wait(pid)
                told = True
                time.sleep(poll_s)
        old = _read_pid(fd)
        if old is not None and old != os.getpid() and not pid_alive(old):
            log.warning(
                "%s: taking over the stale lock of pid %d (no longer running)", self.what, old
            )
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        _HELD[key] = self
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        _HELD.pop(os.path.abspath(self.path), None)
        with contextlib.suppress(OSError):  # a full disk: the kernel still drops the lock
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> PidLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
