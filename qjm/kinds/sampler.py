"""PUBs on a Sampler V2 (``BaseSamplerV2``): Aer's and qiskit-ibm-runtime's ``SamplerV2``,
qiskit's ``StatevectorSampler`` and ``BackendSamplerV2``, or a :class:`~qjm.ManagedSampler`."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from qjm.kinds.primitive import PrimitiveKind
from qjm.pubs import coerce_sampler_pubs
from qjm.runoptions import AER_SEED_STRIDE


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

    def _wrapped(self) -> SamplerKind | None:
        """The kind of the sampler a wrapper runs (:class:`qjm.DaskSampler`), if the target is
        one: seeds are the wrapped sampler's."""
        inner = getattr(self.target, "wrapped_primitive", None)
        return None if inner is None else SamplerKind(inner)

    def seed(self) -> int | None:
        """The seed the sampler samples with: ``_seed`` of qiskit's ``StatevectorSampler`` and
        Aer's ``SamplerV2``, ``options.seed_simulator`` of ``BackendSamplerV2``, or
        ``options.simulator.seed_simulator`` of qiskit-ibm-runtime's local mode."""
        wrapped = self._wrapped()
        if wrapped is not None:
            return wrapped.seed()
        options = getattr(self.target, "options", None)
        for seed in (
            getattr(self.target, "_seed", None),
            getattr(options, "seed_simulator", None),
            getattr(getattr(options, "simulator", None), "seed_simulator", None),
        ):
            if isinstance(seed, int) and not isinstance(seed, bool):
                return seed
        return None

    def seed_stride(self) -> int:
        """How the seed moves from one bound circuit to the next inside one job: Aer seeds
        circuit ``k`` of a run with ``seed + 2113 * k`` (Aer's ``SamplerV2``, and
        ``BackendSamplerV2`` or qiskit-ibm-runtime's local mode over an Aer simulator); 0 where
        every circuit gets the same seed (``StatevectorSampler``) or the rule is not known."""
        wrapped = self._wrapped()
        if wrapped is not None:
            return wrapped.seed_stride()
        if type(self.target).__module__.startswith("qiskit_aer"):
            return AER_SEED_STRIDE
        backend = self.backend()
        module = type(backend).__module__ if backend is not None else ""
        if module.startswith(("qiskit_aer", "qiskit_ibm_runtime.fake_provider")):
            return AER_SEED_STRIDE
        return 0

    def with_seed(self, seed: int) -> Any:
        wrapped = self._wrapped()
        if wrapped is not None:
            return self.target.with_primitive(wrapped.with_seed(seed))
        other = copy.copy(self.target)
        options = getattr(self.target, "_options", None)
        if getattr(self.target, "_seed", None) is not None:
            other._seed = seed
        elif (
            dataclasses.is_dataclass(options)
            and getattr(options, "seed_simulator", None) is not None
        ):
            other._options = dataclasses.replace(options, seed_simulator=seed)
        elif getattr(getattr(options, "simulator", None), "seed_simulator", None) is not None:
            other._options = copy.deepcopy(options)
            other._options.simulator.seed_simulator = seed
        else:
            return self.target
        return other

    def coerce(self, work: Any, options: dict[str, Any]) -> list:
        shots = options.get("shots")
        return coerce_sampler_pubs(work, shots if shots is not None else self.default_shots())
