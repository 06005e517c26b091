"""The training process does not outlive the server that started it.

A server killed with SIGKILL cannot stop its child; left running, the child would keep both cores
busy and write into a job directory the restarted server has already removed. The server names
itself in MARQUEE_PARENT_PID; on Linux the kernel then sends this process SIGKILL when that parent
dies (prctl PR_SET_PDEATHSIG), and a parent already gone before the call is caught by its pid.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


# The process that imported this module first; a forked DataLoader worker inherits the value.
MAIN_PID = os.getpid()


def die_with(parent: int) -> bool:
    """Arms SIGKILL for when `parent` dies (Linux); exits now if it already has."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return False
    if os.getppid() != parent:
        os._exit(1)  # the parent died before the signal was armed
    return True


def die_with_parent(environ: dict[str, str] | None = None) -> bool:
    """Arms the parent-death signal when MARQUEE_PARENT_PID is set; returns whether it did."""
    parent = (environ if environ is not None else os.environ).get("MARQUEE_PARENT_PID")
    return bool(parent) and die_with(int(parent))


def die_with_main() -> bool:
    """For a forked worker (DataLoader): dies with the training process that forked it."""
    return MAIN_PID != os.getpid() and die_with(MAIN_PID)
