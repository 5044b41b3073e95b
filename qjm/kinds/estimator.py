"""PUBs on an Estimator V2 (``BaseEstimatorV2``): Aer's and qiskit-ibm-runtime's
``EstimatorV2``, qiskit's ``StatevectorEstimator`` and ``BackendEstimatorV2``, or a
:class:`~qjm.ManagedEstimator`."""

from __future__ import annotations

from typing import Any

from qjm.kinds.primitive import PrimitiveKind
from qjm.pubs import coerce_estimator_pubs


class EstimatorKind(PrimitiveKind):
    name = "estimator"
    base_class = "BaseEstimatorV2"

    def coerce(self, work: Any, options: dict[str, Any]) -> list:
        return coerce_estimator_pubs(work, options.get("precision"))
