"""A backend call that never returns does not keep the process alive: after a ``results()``
deadline and after Ctrl-C the interpreter exits, and every result fetched before is kept."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

HANGING = """
import sys, time
from backends import HandoverBackend
from conftest import _make_circuits
import qjm

# job 0's result arrives at once; job 1's result() takes an hour (a transfer that hangs)
slow = lambda names: 3600.0 if "c1" in names else 0.0
backend = HandoverBackend(handover=slow)
manager = qjm.JobManager(store=sys.argv[1])
job_set = manager.run(_make_circuits(2), backend=backend, max_experiments_per_job=1, shots=20)
print("id", job_set.job_set_id(), flush=True)
if sys.argv[2] == "deadline":
    try:
        job_set.results(timeout=1.0)
    except qjm.JobManagerTimeoutError as exc:
        print("timed out:", exc, flush=True)
else:
    print("waiting", flush=True)
    job_set.results()
t_exit = time.monotonic()
print("exiting", flush=True)
"""


def start(subprocess_env, store, mode):
    return subprocess.Popen(
        [sys.executable, "-c", HANGING, str(store), mode],
        env=subprocess_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kept(store, job_set_id) -> int:
    import qjm

    results = qjm.JobManager(store=store).retrieve_job_set(job_set_id).results(partial=True)
    return len(results) - len(results.missing())


def test_a_hung_result_does_not_keep_the_process_alive_after_a_deadline(tmp_path, subprocess_env):
    store = tmp_path / "s.sqlite"
    proc = start(subprocess_env, store, "deadline")
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "timed out:" in out and "job 1" in out and "exiting" in out
    job_set_id = out.split()[1]
    assert kept(store, job_set_id) == 1  # job 0's result was kept before the deadline
    print("deadline: process exited; 1 of 2 results kept, the hung one abandoned")


def test_ctrl_c_during_results_returns_and_exits(tmp_path, subprocess_env):
    store = tmp_path / "s.sqlite"
    proc = start(subprocess_env, store, "wait")
    try:
        job_set_id = proc.stdout.readline().split()[1]
        assert proc.stdout.readline().strip() == "waiting"
        time.sleep(1.0)  # job 0 is kept, job 1's result() is hanging
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        proc.kill()
    assert proc.returncode != 0 and "KeyboardInterrupt" in err, err
    assert "exiting" not in out
    assert kept(store, job_set_id) == 1
    print(f"Ctrl-C: process ended {took:.2f} s after SIGINT; 1 of 2 results kept")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-s"]))
