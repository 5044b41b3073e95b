"""What Sampler V2 and Estimator V2 work share: ``primitive.run(pubs, **options)`` gives a
``BasePrimitiveJob`` whose ``result()`` is a ``PrimitiveResult``; decoded into
:class:`~qjm.pubrecords.PrimitiveJobRecord`, read through :class:`~qjm.ManagedPrimitiveResults`."""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from qiskit.providers import JobStatus

from qjm.kinds import Kind
from qjm.pubrecords import decode_primitive_result

_SEED_KEY = "__qjm_seed__"  # a shot part's seed, from job_options to submit (never sent)


class PrimitiveKind(Kind):
    """PUBs on a V2 primitive (subclassed per primitive)."""

    item_word = "PUB"
    base_class = ""  # "BaseSamplerV2" / "BaseEstimatorV2"

    def __init__(self, target: Any):
        if target is not None and not callable(getattr(target, "run", None)):
            raise TypeError(
                f"{self.name} must be a {self.base_class} (an object with run(pubs)), "
                f"not {target!r}"
            )
        super().__init__(target)

    def coerce(self, work: Any, options: dict[str, Any]) -> list:
        raise NotImplementedError

    def backend(self) -> Any:
        """The backend the primitive runs on, where it says (qiskit-ibm-runtime's ``backend()``,
        ``BackendSamplerV2.backend``), else None."""
        backend = getattr(self.target, "backend", None)
        if callable(backend):
            try:
                backend = backend()
            except Exception:  # noqa: BLE001 - a primitive that cannot say has no backend
                backend = None
        return backend

    def check_options(self, options: dict[str, Any], check: bool = True) -> None:
        """Refuse a keyword ``run`` does not take (a primitive's run takes only a few).

        Raises:
            ValueError: an unknown keyword, with the closest known one.
        """
        if not check:
            return
        try:
            params = inspect.signature(self.target.run).parameters
        except (TypeError, ValueError):
            return
        if any(p.kind == p.VAR_KEYWORD for p in params.values()):
            return
        known = [n for n in list(params)[1:]]
        for key in options:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                raise ValueError(
                    f"unknown run option {key!r} for {type(self.target).__name__}.run"
                    + (f" (did you mean {close[0]!r}?)" if close else "")
                    + f"; it takes {', '.join(known) or 'no options'}. Nothing was submitted."
                )

    def job_options(self, run_options: dict[str, Any], job: Any) -> dict[str, Any]:
        options = dict(run_options)
        if job.seed is not None:
            options[_SEED_KEY] = job.seed
        return options

    def with_seed(self, seed: int) -> Any:
        """The primitive with another seed (a copy), for a shot part of its own; the primitive
        itself when it takes no seed qjm knows of."""
        return self.target

    def seed(self) -> int | None:
        """The seed the primitive samples with, where qjm knows how to read it."""
        return None

    def seed_stride(self) -> int:
        """How the primitive's seed moves from one circuit of a job to the next (0: it does
        not, or qjm does not know)."""
        return 0

    def submit(self, items: list, options: dict[str, Any], key: str | None = None) -> Any:
        options = dict(options)
        seed = options.pop(_SEED_KEY, None)
        target = self.target if seed is None else self.with_seed(seed)
        return target.run(items, **options)

    def fetch(self, job: Any, status: JobStatus) -> Any:
        columnar = getattr(job, "columnar_result", None)
        if callable(columnar):  # the record itself (qjm.DaskSampler): nothing to decode here
            return columnar(confirm=False)
        return decode_primitive_result(job.result())

    def work_bytes(self, items: list) -> bytes | None:
        from qjm.pubwire import encode_pubs

        return encode_pubs(items)

    def load_work(self, blob: bytes) -> list:
        from qjm.pubwire import decode_pubs

        return decode_pubs(blob)

    def retrieve_job(self, job_id: str) -> Any:
        if callable(getattr(self.target, "retrieve_job", None)):  # qjm.DaskSampler
            return self.target.retrieve_job(job_id)
        service = getattr(self.target, "_service", None)
        lookup = getattr(service, "job", None)
        if not callable(lookup):
            raise LookupError(
                f"not reattached: a {type(self.target).__name__} cannot look up jobs by id "
                "(local primitives keep no jobs); only the results kept in the store are "
                "available"
            )
        return lookup(job_id)

    def results(self, job_set: Any, records: list, partial: bool) -> Any:
        from qjm.primitiveresults import ManagedPrimitiveResults

        return ManagedPrimitiveResults(job_set, records, partial)
