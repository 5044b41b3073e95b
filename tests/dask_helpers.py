"""What the Dask tests run on the workers: factories of backends that are slow on purpose and
mark each run with a file, so a test can count how often its jobs ran (and where).

They travel to the workers by value (``cloudpickle.register_pickle_by_value``), so a worker
started elsewhere (``dask worker`` in another process) does not need this folder on its path.
"""

from __future__ import annotations

import os
import time
import uuid


class SlowRunner:
    """Runs circuits on an ``AerSimulator`` after ``delay`` seconds, writing a file named
    ``<pid>-<random>`` holding the first circuit's name into ``marks`` for every run."""

    def __init__(self, delay: float, marks: str | None = None):
        from qiskit_aer import AerSimulator

        self.delay = delay
        self.marks = marks
        self.inner = AerSimulator()

    def run(self, circuits, **options):
        if self.marks:
            path = os.path.join(self.marks, f"{os.getpid()}-{uuid.uuid4().hex}")
            with open(path, "w") as f:
                f.write(circuits[0].name)
        time.sleep(self.delay)
        return self.inner.run(circuits, **options)


def slow_aer(delay: float, marks: str | None = None) -> SlowRunner:
    """A factory for ``DaskBackend(..., factory=functools.partial(slow_aer, delay, marks))``."""
    return SlowRunner(delay, marks)


def runs(marks: str) -> list[str]:
    """The circuit names of every run marked in ``marks`` (one per run, any order)."""
    out = []
    for name in os.listdir(marks):
        with open(os.path.join(marks, name)) as f:
            out.append(f.read())
    return out


def failing(message: str):
    """A factory whose backend raises on every run."""
    return _Failing(message)


class _Failing:
    def __init__(self, message: str):
        self.message = message

    def run(self, circuits, **options):
        raise ValueError(self.message)
