"""What state a job set is in, said plainly: done, failed (some jobs partially), running, not
submitted, cancelled. ``report()`` counts its jobs with :func:`job_state`; ``qjm list`` and
:meth:`qjm.JobManager.job_set_summaries` read the same from the store alone (no backend call, no
result decoded), so listing many large sets stays fast.

A job is *done* only when it ran and every one of its experiments succeeded; *partial* when its
result holds some successful experiments and some failed ones (``results(partial=True)`` gives
the successful ones); *failed* when it failed with nothing usable, or its submission failed;
*running* when it was submitted and its result is not kept yet (the store cannot tell a job still
on the backend from one whose process ended before fetching it); *not submitted* when it never
started.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from qiskit.providers import JobStatus

from qjm.wire import _PREFIX, MAGIC, record_successes

DONE = "done"
PARTIAL = "partial"
FAILED = "failed"
CANCELLED = "cancelled"
RUNNING = "running"
NOT_SUBMITTED = "not submitted"

_FALSE = b'"success":false'


def outcome_state(outcome: Any) -> str:
    """The state of a job from its kept outcome (a :class:`qjm.outcome.JobOutcome`); an outcome
    read from the store says it without its record being read."""
    known = getattr(outcome, "state", None)
    if known is not None:
        return known
    if outcome.ok:
        return DONE
    if outcome.status == JobStatus.CANCELLED:
        return CANCELLED
    record = outcome.record
    successes = getattr(record, "successes", None)  # known without decoding (PooledRecord)
    if successes is not None:
        return PARTIAL if successes().any() else FAILED
    if record is not None and any(e.success for e in record.experiments):
        return PARTIAL
    return FAILED


def job_state(status: JobStatus | None, outcome: Any = None, submitted: bool = True) -> str:
    """The state of a job from its status and, once fetched, its outcome. A job DONE whose
    result is not fetched yet counts as done (the backend says so; its experiments are known
    only once fetched)."""
    if outcome is not None:
        return outcome_state(outcome)
    if status is None:
        return FAILED if submitted else NOT_SUBMITTED
    if status == JobStatus.DONE:
        return DONE
    if status == JobStatus.ERROR:
        return FAILED
    if status == JobStatus.CANCELLED:
        return CANCELLED
    return RUNNING


@dataclass(frozen=True)
class JobSetSummary:
    """One job set as ``qjm list`` shows it: counts of its jobs by state.

    ``failed`` includes the ``partial`` jobs (some experiments failed, the others have data).
    """

    job_set_id: str
    name: str | None
    tags: list[str]
    backend_name: str | None
    created: float
    jobs: int
    done: int = 0
    failed: int = 0
    partial: int = 0
    cancelled: int = 0
    running: int = 0
    not_submitted: int = 0

    @property
    def state(self) -> str:
        """One word for the set: "running" while any job is, else "failed" when any job failed,
        "not submitted", "cancelled", or "done" when every job is."""
        if self.running:
            return RUNNING
        if self.failed:
            return FAILED
        if self.not_submitted:
            return NOT_SUBMITTED
        if self.cancelled:
            return CANCELLED
        return DONE

    def describe(self) -> str:
        """The state in a few words: ``done 20/20``, ``failed 3 of 20 (2 partial)``,
        ``running 5 of 20, done 15``, ``not submitted 4 of 20, done 16``."""
        n = self.jobs
        parts = {
            RUNNING: self.running,
            FAILED: self.failed,
            NOT_SUBMITTED: self.not_submitted,
            CANCELLED: self.cancelled,
            DONE: self.done,
        }
        state = self.state
        if state == DONE:
            return f"done {self.done}/{n}"
        words = []
        for key in (state, *[k for k in parts if k != state]):
            count = parts[key]
            if not count:
                continue
            text = f"{key} {count} of {n}" if key == state else f"{key} {count}"
            if key == FAILED and self.partial:
                text += f" ({self.partial} partial)"
            words.append(text)
        return ", ".join(words)


def stored_job_state(row: tuple | None, result: tuple | None) -> str:
    """A job's state from its store rows alone: ``row`` = (job_id, status, error) of table
    ``jobs`` (None: no row), ``result`` = (status, header bytes or None[, kept state or None]) of
    table ``results`` (the kept state from the job's row, when the store has it)."""
    if row is None:
        return NOT_SUBMITTED
    job_id, status, error = row
    if status in (JobStatus.DONE.name, JobStatus.ERROR.name, JobStatus.CANCELLED.name):
        if status == JobStatus.CANCELLED.name:
            return CANCELLED
        if result is None or result[0] != status:  # not in the store (":memory:")
            return DONE if status == JobStatus.DONE.name else FAILED
        if len(result) > 2 and result[2] is not None:
            return result[2]
        return _stored_outcome_state(status, result[1])
    if job_id is not None:
        return RUNNING
    if error:
        return FAILED
    if status is not None:  # SUBMITTING: the intent is recorded, the job id not yet
        return RUNNING
    return NOT_SUBMITTED


def _stored_outcome_state(status: str, header: bytes | None) -> str:
    """DONE, PARTIAL or FAILED from a kept result's header (JSON, see :mod:`qjm.wire`) without
    decoding its arrays; the header is parsed only when it holds a ``"success":false``."""
    if header is None:
        return FAILED  # ended without a result
    if status == JobStatus.DONE.name and _FALSE not in header:
        return DONE
    try:
        parsed = json.loads(header)
    except ValueError:
        return DONE if status == JobStatus.DONE.name else FAILED
    if parsed.get("kind") == "primitive":  # a primitive job holds every PUB or failed
        return DONE if status == JobStatus.DONE.name else FAILED
    fields = parsed.get("fields") if isinstance(parsed.get("fields"), dict) else {}
    experiments = record_successes(parsed)  # the pooled layout says each one's success
    if experiments is None:
        experiments = [
            bool((e.get("fields") or {}).get("success", False))
            for e in parsed.get("experiments") or []
            if isinstance(e, dict)
        ]
    if status == JobStatus.DONE.name and fields.get("success") and all(experiments):
        return DONE
    return PARTIAL if any(experiments) else FAILED


def record_header(prefix: bytes) -> tuple[bytes | None, int]:
    """The JSON header of a stored columnar record from its first bytes, and the bytes needed
    to read all of it (more than ``len(prefix)`` when the prefix is too short)."""
    if len(prefix) < _PREFIX.size:
        return None, 0
    magic, _version, _flags, length = _PREFIX.unpack_from(prefix)
    if magic != MAGIC:
        return None, 0
    end = _PREFIX.size + length
    if end > len(prefix):
        return None, end
    return bytes(prefix[_PREFIX.size : end]), end


def summarize(overview: dict, outcomes: dict[int, Any] | None = None) -> JobSetSummary:
    """A :class:`JobSetSummary` from one entry of :meth:`qjm.store.Store.job_set_overview`;
    ``outcomes`` ({idx: JobOutcome}), the kept outcomes of a set of this process, take the place
    of the store's (a ``":memory:"`` store keeps no results)."""
    counts = dict.fromkeys((DONE, PARTIAL, FAILED, CANCELLED, RUNNING, NOT_SUBMITTED), 0)
    rows, results = overview["jobs"], overview["results"]
    outcomes = outcomes or {}
    for idx in range(overview["n_jobs"]):
        if idx in outcomes:
            counts[outcome_state(outcomes[idx])] += 1
        else:
            counts[stored_job_state(rows.get(idx), results.get(idx))] += 1
    return JobSetSummary(
        job_set_id=overview["id"],
        name=overview["name"],
        tags=list(overview["tags"]),
        backend_name=overview["backend_name"],
        created=overview["created"],
        jobs=overview["n_jobs"],
        done=counts[DONE],
        failed=counts[FAILED] + counts[PARTIAL],
        partial=counts[PARTIAL],
        cancelled=counts[CANCELLED],
        running=counts[RUNNING],
        not_submitted=counts[NOT_SUBMITTED],
    )
