"""Kinds of work: what differs between circuits on a backend, PUBs on a Sampler V2 and PUBs on an
Estimator V2.

A job set's plan, thread pool, deadline, store and retrieval are written once
(:mod:`qjm.managedjobset`); what depends on the kind of work sits behind :class:`Kind`, one module
per kind (:mod:`qjm.kinds.circuits`, :mod:`qjm.kinds.sampler`, :mod:`qjm.kinds.estimator`):

* ``submit(items, options)``: run one job's items on the target, return its job;
* ``status(job)``: the job's status as a ``JobStatus`` (primitive jobs may answer with strings);
* ``fetch(job, status)``: the job's result decoded into a record, once it is final;
* ``retrieve_jobs(job_ids)`` / ``retrieve_job(job_id)``: the target's jobs by id, for a set
  retrieved in another process;
* ``results(...)``: the object a user reads the results of the set from.
"""

from __future__ import annotations

from typing import Any

from qiskit.providers import JobStatus

_STATUS_NAMES = {
    "INITIALIZING": JobStatus.INITIALIZING,
    "QUEUED": JobStatus.QUEUED,
    "VALIDATING": JobStatus.VALIDATING,
    "RUNNING": JobStatus.RUNNING,
    "CANCELLED": JobStatus.CANCELLED,
    "CANCELED": JobStatus.CANCELLED,
    "DONE": JobStatus.DONE,
    "COMPLETED": JobStatus.DONE,
    "ERROR": JobStatus.ERROR,
    "FAILED": JobStatus.ERROR,
}


def normalize_status(status: Any) -> JobStatus:
    """A job's status as a ``JobStatus``: qiskit's ``PrimitiveJob`` and backends answer with one,
    qiskit-ibm-runtime's jobs with a string ("QUEUED", "RUNNING", "DONE", "ERROR", "CANCELLED").

    Raises:
        ValueError: a status qjm does not know.
    """
    if isinstance(status, JobStatus):
        return status
    name = getattr(status, "name", status)
    if isinstance(name, str):
        found = _STATUS_NAMES.get(name.strip().upper())
        if found is not None:
            return found
    raise ValueError(f"unknown job status {status!r}")


class Kind:
    """What one kind of work does differently. Subclasses set ``name`` and ``item_word``."""

    name = ""
    item_word = "experiment"  # what an item is called in reports ("experiment", "PUB")

    def __init__(self, target: Any):
        self.target = target

    def target_name(self) -> str | None:
        name = getattr(self.target, "name", None)
        if callable(name):  # BackendV1 and older providers
            name = name()
        if name is None and self.target is not None:
            backend = getattr(self.target, "backend", None)
            backend = backend() if callable(backend) else backend
            name = getattr(backend, "name", None) if backend is not None else None
            if name is None:
                return type(self.target).__name__
        return None if name is None else str(name)

    def job_options(self, run_options: dict[str, Any], job: Any) -> dict[str, Any]:
        """The options of one job (a :class:`~qjm.ManagedJob`) of the set."""
        return dict(run_options)

    def submit(self, items: list, options: dict[str, Any], key: str | None = None) -> Any:
        """Submit one job. ``key`` names this submission of this job: a target that takes such
        a key gives the job it already made for it instead of running the items twice."""
        raise NotImplementedError

    def takes_key(self) -> bool:
        """Whether the target takes :meth:`submit`'s ``key``: then a submission whose answer was
        lost can be made again without running the job twice."""
        return False

    def tag_options(self, options: dict[str, Any], tag: str) -> dict[str, Any]:
        """The options with ``tag`` on the job, where the target can find jobs by tag later."""
        return options

    def find_by_tag(self, tag: str) -> Any:
        """The target's job carrying ``tag``, None when there is none or the target cannot say."""
        return None

    def work_bytes(self, items: list) -> bytes | None:
        """What a job runs, as the journal keeps it (None: not kept for this kind)."""
        return None

    def load_work(self, blob: bytes) -> list:
        """The inverse of :meth:`work_bytes`."""
        raise NotImplementedError

    def status(self, job: Any) -> JobStatus:
        return normalize_status(job.status())

    def fetch(self, job: Any, status: JobStatus) -> Any:
        """The job's result, decoded; a result the target serves once is not yet released
        (:meth:`release`)."""
        raise NotImplementedError

    def name_reader(self, job: Any, name: str) -> None:
        """Give the job's reader a name that a later process reading for the same job set uses
        too (a ``qjm serve`` result lease), where the target has one."""
        if hasattr(job, "result_lease"):
            job.result_lease = name

    def needs_release(self, job: Any) -> bool:
        """True when the target keeps the job's result until told it may discard it."""
        return bool(getattr(job, "needs_confirmation", False))

    def release(self, job: Any, kept: bool = False) -> None:
        """Tell the target the job's result is kept (committed to the store) and may be
        discarded, where the target supports that (``confirm_result()``: a ``qjm serve`` that
        serves each result once). ``kept``: the result was read by an earlier process."""
        confirm = getattr(job, "confirm_result", None)
        if callable(confirm):
            confirm(kept=True) if kept else confirm()

    def retrieve_jobs(self, job_ids: list[str]) -> list[Any] | None:
        """The target's jobs by id in one look-up (None where unknown), or None when the target
        has no such look-up (then :meth:`retrieve_job` is asked for each)."""
        return None

    def retrieve_job(self, job_id: str) -> Any:
        """The target's job by id.

        Raises:
            LookupError: the target cannot look up jobs by id (the message says why).
        """
        raise LookupError(
            f"not reattached: a {type(self.target).__name__} cannot look up jobs by id"
        )

    def results(self, job_set: Any, records: list, partial: bool) -> Any:
        raise NotImplementedError


def kind_for(backend: Any = None, sampler: Any = None, estimator: Any = None) -> Kind:
    """The kind of work for exactly one of ``backend``, ``sampler`` and ``estimator``.

    Raises:
        ValueError: none or several of them.
        TypeError: the one given is not a backend, a Sampler V2 or an Estimator V2.
    """
    given = [
        n
        for n, v in (("backend", backend), ("sampler", sampler), ("estimator", estimator))
        if v is not None
    ]
    if len(given) != 1:
        raise ValueError(
            "give exactly one of backend=, sampler= and estimator=, got "
            + (" and ".join(given) if given else "none")
        )
    if backend is not None:
        from qjm.kinds.circuits import CircuitKind

        return CircuitKind(backend)
    if sampler is not None:
        from qjm.kinds.sampler import SamplerKind

        return SamplerKind(sampler)
    from qjm.kinds.estimator import EstimatorKind

    return EstimatorKind(estimator)


def kind_by_name(name: str | None, target: Any) -> Kind:
    """The kind of work a stored job set was (``"circuits"`` for sets stored before kinds)."""
    if name in (None, "circuits"):
        from qjm.kinds.circuits import CircuitKind

        return CircuitKind(target)
    if name == "sampler":
        from qjm.kinds.sampler import SamplerKind

        return SamplerKind(target)
    if name == "estimator":
        from qjm.kinds.estimator import EstimatorKind

        return EstimatorKind(target)
    raise ValueError(f"unknown kind of work {name!r} in the store")
