"""``trustfm train --nproc N``: the same command again, under ``torchrun`` with N processes on this machine."""

from __future__ import annotations

import subprocess
import sys


def relaunch_under_torchrun(nproc: int) -> int:
    """Run ``torchrun --standalone --nproc-per-node nproc -m trustfm.cli <these arguments, less --nproc>``;
    returns its exit code (the first failing process's)."""
    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if arg == "--nproc":
            skip = True
            continue
        if arg.startswith("--nproc="):
            continue
        args.append(arg)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "trustfm.cli", *args]
    return subprocess.run(command).returncode
