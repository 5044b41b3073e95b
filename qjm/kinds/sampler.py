"""PUBs on a Sampler V2 (``BaseSamplerV2``): Aer's and qiskit-ibm-runtime's ``SamplerV2``,
qiskit's ``StatevectorSampler`` and ``BackendSamplerV2``, or a :class:`~qjm.ManagedSampler`."""

from __future__ import annotations

import copy
from typing import Any

from qjm.kinds.primitive import PrimitiveKind
from qjm.pubs import coerce_sampler_pubs


class SamplerKind(PrimitiveKind):
    name = "sampler"
    base_class = "BaseSamplerV2"

    def default_shots(self) -> int | None:
        """The shots the sampler runs a PUB with when neither the PUB nor ``run`` says."""
        for owner in (self.target, getattr(self.target, "options", None)):
            shots = getattr(owner, "default_shots", None)
            if isinstance(shots, int) and not isinstance(shots, bool):
                return shots
        return None

    def seed(self) -> int | None:
        """The seed of qiskit's ``StatevectorSampler`` and Aer's ``SamplerV2`` (``_seed``), or of
        qiskit-ibm-runtime's local mode (``options.simulator.seed_simulator``)."""
        seed = getattr(self.target, "_seed", None)
        if seed is None:
            simulator = getattr(getattr(self.target, "options", None), "simulator", None)
            seed = getattr(simulator, "seed_simulator", None)
        if isinstance(seed, bool) or not isinstance(seed, int):
            return None
        return seed

    def with_seed(self, seed: int) -> Any:
        other = copy.copy(self.target)
        if getattr(self.target, "_seed", None) is not None:
            other._seed = seed
            return other
        options = getattr(self.target, "options", None)
        simulator = getattr(options, "simulator", None)
        if getattr(simulator, "seed_simulator", None) is not None:
            other._options = copy.deepcopy(options)
            other.options.simulator.seed_simulator = seed
            return other
        return self.target

    def coerce(self, work: Any, options: dict[str, Any]) -> list:
        shots = options.get("shots")
        return coerce_sampler_pubs(work, shots if shots is not None else self.default_shots())
