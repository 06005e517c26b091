import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _gone(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[-1].split()[0] == "Z"


def _kill_and_expect(proc: subprocess.Popen, pid_file: Path, within: float, what: str) -> None:
    """Waits for `what` to write its pid, SIGKILLs `proc`, and expects `what` gone `within` seconds."""
    deadline = time.time() + 60
    while not (pid_file.exists() and pid_file.read_text()):
        assert time.time() < deadline and proc.poll() is None, f"{what} did not start"
        time.sleep(0.05)
    pid = int(pid_file.read_text())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + within
    while not _gone(pid):
        assert time.time() < deadline, f"{what} outlived the killed process"
        time.sleep(0.05)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_child_dies_with_its_killed_parent(tmp_path):
    # A parent that starts `python -m training`-like child armed by die_with_parent, then is SIGKILLed.
    pid_file = tmp_path / "child.pid"
    parent = textwrap.dedent(
        f"""
        import os, subprocess, sys, time
        env = dict(os.environ, MARQUEE_PARENT_PID=str(os.getpid()))
        child = subprocess.Popen([sys.executable, "-c",
            "from training.lifetime import die_with_parent; import os, time; "
            "assert die_with_parent(); open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"],
            cwd={str(ROOT)!r}, env=env)
        time.sleep(60)
        """
    )
    _kill_and_expect(subprocess.Popen([sys.executable, "-c", parent]), pid_file, within=10, what="the child")

@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_dataloader_workers_die_with_a_killed_training_process(tmp_path):
    # PyTorch's own watchdog notices a dead parent only every 5 s; the armed worker goes at once.
    pid_file = tmp_path / "worker.pid"
    main = textwrap.dedent(
        f"""
        import os, time, torch
        from torch.utils.data import DataLoader, Dataset
        from training.data import quiet_worker
        class Slow(Dataset):
            def __len__(self): return 100
            def __getitem__(self, i):
                open({str(pid_file)!r}, "w").write(str(os.getpid()))
                time.sleep(60)
                return torch.zeros(1)
        for _ in DataLoader(Slow(), num_workers=1, worker_init_fn=quiet_worker):
            pass
        """
    )
    _kill_and_expect(subprocess.Popen([sys.executable, "-c", main], cwd=ROOT), pid_file, within=2, what="the worker")

def test_without_a_parent_named_nothing_is_armed():
    from training.lifetime import die_with_parent

    assert die_with_parent({}) is False
