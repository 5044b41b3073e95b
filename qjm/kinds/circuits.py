"""Circuits on a backend: ``backend.run(circuits, **options)`` gives a job whose ``result()`` is a
qiskit ``Result``; decoded into columnar records, read through :class:`~qjm.ManagedResults`."""

from __future__ import annotations

import inspect
import io
from typing import Any

from qiskit.providers import JobStatus

from qjm.kinds import Kind
from qjm.records import decode_result
from qjm.runoptions import job_options


def _accepts(function: Any, keyword: str) -> bool:
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return keyword in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def _names(function: Any, keyword: str) -> bool:
    """``function`` has a parameter of this very name (not only ``**kwargs``)."""
    try:
        return keyword in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def _identity(items: list) -> tuple:
    return tuple(map(id, items))


class CircuitKind(Kind):
    """Circuits on a ``BackendV2`` (or any object with ``run``)."""

    name = "circuits"
    item_word = "experiment"

    def __init__(self, target: Any):
        if target is not None and not callable(getattr(target, "run", None)):
            raise TypeError(f"backend must be a qiskit backend with a run() method, not {target!r}")
        super().__init__(target)
        self._qpy: dict[tuple, tuple[list, bytes]] = {}  # journaled QPY of jobs not yet submitted
        self._takes_key: bool | None = None

    def job_options(self, run_options: dict[str, Any], job: Any) -> dict[str, Any]:
        return job_options(run_options, job.start_index, job.end_index + 1, job.shots, job.seed)

    def submit(self, items: list, options: dict[str, Any], key: str | None = None) -> Any:
        if key is not None and self.takes_key():
            # a service that may have made the job before its answer was lost (qjm's
            # RemoteBackend) gives that job again for the same key
            options = dict(options, idempotency_key=key)
        run_qpy = getattr(self.target, "run_qpy", None)
        if callable(run_qpy):
            # a backend that sends QPY anyway (qjm.DaskBackend) takes the journal's bytes
            kept = self._qpy.pop(_identity(items), None)
            if kept is not None:
                return run_qpy(kept[1], items, **options)
        return self.target.run(items, **options)

    def takes_key(self) -> bool:
        if self._takes_key is None:  # asked once per submission: inspect.signature once
            self._takes_key = _names(self.target.run, "idempotency_key")
        return self._takes_key

    def fetch(self, job: Any, status: JobStatus) -> Any:
        columnar = getattr(job, "columnar_result", None)
        if callable(columnar):
            # the backend hands over the columnar arrays themselves: nothing to decode; a
            # result served once is confirmed only after the store has it (release())
            return columnar(confirm=False) if _accepts(columnar, "confirm") else columnar()
        if status == JobStatus.ERROR and _accepts(job.result, "partial"):
            # IBM-style jobs hand over a failed job's successful experiments only on request;
            # results are fetched once and kept, so always ask for them.
            try:
                result = job.result(partial=True)
            except TypeError:  # **kwargs that do not take partial after all
                result = job.result()
            return decode_result(result)
        return decode_result(job.result())

    def _lists_by_tag(self) -> bool:
        return callable(getattr(self.target, "jobs", None)) and _accepts(self.target.run, "tags")

    def tag_options(self, options: dict[str, Any], tag: str) -> dict[str, Any]:
        if "tags" in options or not self._lists_by_tag():
            return options
        return dict(options, tags=[tag])

    def find_by_tag(self, tag: str) -> Any:
        if not self._lists_by_tag():
            return None
        found = list(self.target.jobs(tags=[tag], limit=2))
        return found[0] if found else None

    def work_bytes(self, items: list) -> bytes | None:
        from qiskit import qpy

        buffer = io.BytesIO()
        qpy.dump(items, buffer)
        blob = buffer.getvalue()
        if callable(getattr(self.target, "run_qpy", None)):
            # kept until the job is submitted (with the circuits: their ids stay theirs)
            self._qpy[_identity(items)] = (items, blob)
        return blob

    def load_work(self, blob: bytes) -> list:
        from qiskit import qpy

        return list(qpy.load(io.BytesIO(blob)))

    def retrieve_jobs(self, job_ids: list[str]) -> list[Any] | None:
        many = getattr(self.target, "retrieve_jobs", None)
        return list(many(job_ids)) if callable(many) else None

    def retrieve_job(self, job_id: str) -> Any:
        one = getattr(self.target, "retrieve_job", None)
        if not callable(one):
            raise LookupError(
                "not reattached: no backend given to retrieve_job_set, or the backend "
                "cannot retrieve jobs by id"
            )
        return one(job_id)

    def results(self, job_set: Any, records: list, partial: bool) -> Any:
        from qjm.managedresults import ManagedResults

        return ManagedResults(
            job_set.job_set_id(),
            job_set.backend_name(),
            job_set._index,
            job_set._plan,
            records,
            partial,
        )
