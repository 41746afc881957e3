import os
import subprocess
import sys
import time

from trustfm.models.threads import auto_threads, idle_cores


def test_idle_cores_lies_between_none_and_every_core():
    assert 0.0 <= idle_cores() <= (os.cpu_count() or 1) + 1e-9


def test_a_machine_whose_cores_are_all_busy_gets_one_thread():
    cores = os.cpu_count() or 1
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        time.sleep(0.5)  # let the spinners be scheduled
        assert auto_threads() == 1
    finally:
        for process in spinners:
            process.kill()
            process.wait()


def test_torchrun_processes_share_the_cores_evenly(monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert auto_threads() == max(1, (os.cpu_count() or 1) // 2)
