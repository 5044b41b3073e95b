"""Experiment look-up: a name, a global index or a circuit to a global index, by dict look-up."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

from qiskit.circuit import QuantumCircuit

from qjm.exceptions import JobManagerError, JobManagerJobNotFound


class ExperimentIndex:
    """Global indices of the experiments of a job set, by name.

    Args:
        names: the experiment (circuit) names in submission order, or a function that reads
            them (called on the first look-up by name, not before).
        n: how many experiments there are (needed when ``names`` is a function).
    """

    def __init__(self, names: list[str] | Callable[[], list[str]], n: int | None = None):
        self._names: list[str] | None = None
        self._load: Callable[[], list[str]] | None = None
        self._by_name: dict[str, int] = {}
        self._duplicates: dict[str, list[int]] = {}
        if callable(names):
            self._load = names
            self._n = n
        else:
            self._build(list(names) if not isinstance(names, list) else names)

    def _build(self, names: list[str]) -> None:
        by_name: dict[str, int] = {}
        duplicates: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            first = by_name.setdefault(name, i)
            if first != i:
                duplicates.setdefault(name, [first]).append(i)
        self._by_name, self._duplicates = by_name, duplicates
        self._n = len(names)
        self._names = names

    @property
    def names(self) -> list[str]:
        """The names in order (read now if they were not yet)."""
        if self._names is None:
            self._build(list(self._load()))
        return self._names

    def __len__(self) -> int:
        if self._n is None:
            return len(self.names)
        return self._n

    def resolve(self, experiment: Any) -> int:
        """The global index of ``experiment`` (a name, a global index or a circuit).

        Raises:
            JobManagerJobNotFound: no experiment has that name or index.
            JobManagerError: the name is used by more than one circuit (look it up by index).
        """
        if type(experiment) is int and 0 <= experiment < len(self):  # the common case, at once
            return experiment
        if isinstance(experiment, QuantumCircuit):
            experiment = experiment.name
        if isinstance(experiment, str):
            if self._names is None:
                self.names  # noqa: B018 - read the names now
            index = self._by_name.get(experiment)
            if index is None:
                raise JobManagerJobNotFound(f"no experiment named {experiment!r} in this job set")
            if experiment in self._duplicates:
                where = self._duplicates[experiment]
                raise JobManagerError(
                    f"the name {experiment!r} is used by {len(where)} circuits (global indices "
                    f"{', '.join(map(str, where[:10]))}{'...' if len(where) > 10 else ''}); "
                    "look the experiment up by its global index instead"
                )
            return index
        if isinstance(experiment, numbers.Integral) and not isinstance(experiment, bool):
            n = len(self)
            if 0 <= experiment < n:
                return int(experiment)
            if -n <= experiment < 0:  # from the end, as a list (and qiskit) reads it
                return int(experiment) + n
            raise JobManagerJobNotFound(
                f"experiment index {experiment} is out of range: this job set has "
                f"{n} experiments (0..{n - 1}, or -{n}..-1 from the end)"
            )
        raise JobManagerJobNotFound(
            f"cannot look up an experiment by {type(experiment).__name__} {experiment!r}: "
            "use its name, its global index or the circuit"
        )
