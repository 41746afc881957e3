"""How many CPU threads torch should use: the cores idle now, not every core.

torch starts one intra-op thread per core and every operation waits for all of them; a core busy with other work
stalls each operation (see :func:`auto_threads`)."""

from __future__ import annotations

import os
import time


def idle_cores(*, window_s: float = 0.2) -> float:
    """How many cores no other work is using right now: the idle share of every core's time over ``window_s``
    seconds (Linux ``/proc/stat``), times the core count; the core count where that cannot be read."""
    cores = os.cpu_count() or 1

    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
        return values[3] + values[4], sum(values)  # idle + iowait, total (jiffies)

    try:
        idle0, total0 = sample()
        time.sleep(window_s)
        idle1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return float(cores)
    return cores * (idle1 - idle0) / max(total1 - total0, 1)


def auto_threads() -> int:
    """torch's intra-op threads for training (when ``train.num_threads`` is not set) and for audits: the cores other work leaves idle when the run
    starts (at least one); under torchrun, the machine's cores shared evenly among its training processes, which
    would otherwise count each other as load and choose differently. Recorded in ``run.json`` (``training.threads``)
    so the run can be repeated bit for bit with ``train.num_threads``.

    Why not always every core: on 2 cores with one busy elsewhere, two threads trained 3.3x slower than one, each
    operation waiting at a barrier for a thread that is not running (SST-2, MiniLM: 82 s against 25 s an epoch)."""
    cores = os.cpu_count() or 1
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    if local > 1:
        return max(1, cores // local)
    return max(1, min(cores, round(idle_cores())))
