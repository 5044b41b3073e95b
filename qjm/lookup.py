"""Experiment look-up: a name, a global index or a circuit to a global index, by dict look-up."""

from __future__ import annotations

import numbers
from typing import Any

from qiskit.circuit import QuantumCircuit

from qjm.exceptions import JobManagerError, JobManagerJobNotFound


class ExperimentIndex:
    """Global indices of the experiments of a job set, by name.

    Args:
        names: the experiment (circuit) names in submission order.
    """

    def __init__(self, names: list[str]):
        self.names = names
        self._by_name: dict[str, int] = {}
        self._duplicates: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            first = self._by_name.setdefault(name, i)
            if first != i:
                self._duplicates.setdefault(name, [first]).append(i)

    def __len__(self) -> int:
        return len(self.names)

    def resolve(self, experiment: Any) -> int:
        """The global index of ``experiment`` (a name, a global index or a circuit).

        Raises:
            JobManagerJobNotFound: no experiment has that name or index.
            JobManagerError: the name is used by more than one circuit (look it up by index).
        """
        if isinstance(experiment, QuantumCircuit):
            experiment = experiment.name
        if isinstance(experiment, str):
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
            if 0 <= experiment < len(self.names):
                return int(experiment)
            if -len(self.names) <= experiment < 0:  # from the end, as a list (and qiskit) reads it
                return int(experiment) + len(self.names)
            raise JobManagerJobNotFound(
                f"experiment index {experiment} is out of range: this job set has "
                f"{len(self.names)} experiments (0..{len(self.names) - 1}, or -{len(self.names)}..-1 "
                "from the end)"
            )
        raise JobManagerJobNotFound(
            f"cannot look up an experiment by {type(experiment).__name__} {experiment!r}: "
            "use its name, its global index or the circuit"
        )
