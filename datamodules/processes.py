"""Child processes that die with their parent, even when the parent is SIGKILLed.

`die_with_parent()` asks Linux (prctl PR_SET_PDEATHSIG, through ctypes) to send the calling
process a signal when its parent thread ends; elsewhere it does nothing. It serves as a pool
initializer (openSMILE workers) and, through `child_setup`, as the `preexec_fn` of the sweep's
training runs, so no worker is orphaned by a killed parent.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int = signal.SIGTERM, parent: int | None = None) -> bool:
    """Have the kernel send `signum` to this process when its parent dies; False if unsupported.

    `parent` is the pid the caller expects as parent: a parent gone before the call (this
    process already re-parented) ends this process at once.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), signum)
    return True


def child_setup(parent: int) -> None:
    """`preexec_fn` of a run: its own process group (stopped as one) that dies with `parent`."""
    os.setpgid(0, 0)
    die_with_parent(signal.SIGTERM, parent)
