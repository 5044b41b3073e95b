"""Draw the pictures of the README: docs/histogram.png and docs/timeline.png.

    MPLBACKEND=Agg python docs/make_pictures.py        # from a source checkout, qjm[plot] installed

A real job set on Aer's ``AerSimulator``, behind qjm's fault-injecting backends
(:mod:`qjm.testing`): jobs queue and run for a second or two, a quarter of the submissions are
refused by a flaky network and retried, some result transfers drop and are fetched again, one job
fails once and is submitted again with ``retry_failed()``, one fails for good and one is refused at
submission. The pictures are what ``results.plot_histogram`` and ``job_set.plot_timeline`` draw.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path

import numpy as np
from qiskit import QuantumCircuit
from qiskit_aer import AerSimulator

import qjm
from qjm.testing import PartialFailBackend, SlowBackend

HERE = Path(__file__).resolve().parent

FAILS_ONCE = "sweep-13"  # its job fails, then succeeds when retried
FAILS = "sweep-30"  # its job fails every time
REFUSED = "sweep-41"  # its job is refused at submission (permanently)


class FlakyDevice(PartialFailBackend):
    """Experiments named in ``fail_names`` fail; submissions are refused now and then
    (``ConnectionRefusedError``, retried by qjm) and a batch holding ``REFUSED`` always
    (``RuntimeError``, not retried); result transfers drop now and then (``ConnectionError``)."""

    kind = "flaky_device"

    def __init__(self, *, rate: float, seed: int, **kw):
        super().__init__(**kw)
        self.rate = rate
        self.rng = random.Random(seed)
        self.rng_lock = threading.Lock()

    def _roll(self) -> bool:
        with self.rng_lock:
            return self.rng.random() < self.rate

    def _check_submit(self, circuits, names):
        if REFUSED in names:
            raise RuntimeError(f"submit refused: {REFUSED!r} needs more qubits than the device has")
        if self._roll():
            raise ConnectionRefusedError("connection refused by the flaky network")

    def _make_job(self, inner_job, names):
        job = super()._make_job(inner_job, names)
        plain, device = job.result, self

        def result(*args, **kwargs):
            if device._roll():
                raise ConnectionError("connection dropped while reading the result")
            return plain(*args, **kwargs)

        job.result = result
        return job


def circuits(n: int = 48) -> list[QuantumCircuit]:
    out = []
    for i in range(n):
        qc = QuantumCircuit(3, 3, name=f"sweep-{i}")
        qc.ry(np.pi * i / n, 0)
        qc.h(1)
        qc.cx(0, 2)
        qc.ry(np.pi / 5, 2)
        qc.cx(1, 0)
        qc.measure(range(3), range(3))
        out.append(qc)
    return out


def main() -> None:
    delays = random.Random(3)
    lock = threading.Lock()

    def delay(_names):
        with lock:
            return delays.uniform(0.8, 2.2)

    device = FlakyDevice(
        rate=0.25,
        seed=11,
        fail_names={FAILS_ONCE, FAILS},
        inner=SlowBackend(delay=delay, inner=AerSimulator()),
        name="flaky_device",
    )
    manager = qjm.JobManager(store=":memory:")
    job_set = manager.run(
        circuits(),
        backend=device,
        name="sweep",
        max_experiments_per_job=4,
        max_active_jobs=5,
        shots=2000,
        seed_simulator=5,
        retry=qjm.RetryPolicy(max_attempts=8, initial_delay=0.3, max_delay=1.0),
    )
    results = job_set.results(timeout=300)
    device.fail_names = frozenset({FAILS})  # the next attempt of FAILS_ONCE's job succeeds
    job_set.retry_failed()
    results = job_set.results(timeout=300)
    print(job_set.report(detailed=False))
    results.plot_histogram("sweep-17", path=HERE / "histogram.png", figsize=(7, 4))
    job_set.plot_timeline(HERE / "timeline.png")
    manager.shutdown()
    print(f"wrote {HERE / 'histogram.png'} and {HERE / 'timeline.png'}")


if __name__ == "__main__":
    main()
