"""PUBs on a Sampler V2 (``BaseSamplerV2``): Aer's and qiskit-ibm-runtime's ``SamplerV2``,
qiskit's ``StatevectorSampler`` and ``BackendSamplerV2``, or a :class:`~qjm.ManagedSampler`."""

from __future__ import annotations

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

    def coerce(self, work: Any, options: dict[str, Any]) -> list:
        shots = options.get("shots")
        return coerce_sampler_pubs(work, shots if shots is not None else self.default_shots())
