"""Planning: which experiments, and which of their shots, go in which job. Pure, no I/O.

Jobs take consecutive runs of experiments, each of the chunk size; only the last may be shorter
(unless a backend also limits the payload bytes of a job: then a job ends early where the next
circuit would pass that limit).
When an experiment's shots exceed the per-job shot limit, its shots are split into parts. Every
experiment then has the same number of parts (shots are a job-level run option, so all experiments
of a job share one shot count): part ``p`` of every experiment is planned as one "round" of jobs,
chunked exactly like an unsplit run. With a chunk of ``k`` and ``J`` jobs per round, part ``p`` of
experiment ``i`` is in job ``p * J + i // k`` at index ``i % k``; part 0 is where an unsplit run
would put the experiment.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class JobSpec:
    """One planned job: experiments ``start .. stop-1``, shot part ``part``.

    ``shots`` is the shot count of this job when the experiments were split into parts, else None
    (the run options decide).
    """

    index: int
    start: int
    stop: int
    part: int = 0
    shots: int | None = None

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Plan:
    """The jobs of a job set, and where each experiment's parts are."""

    n_experiments: int
    jobs: tuple[JobSpec, ...]
    n_parts: int = 1

    def __post_init__(self) -> None:
        per_round = len(self.jobs) // self.n_parts if self.n_parts else 0
        object.__setattr__(self, "_per_round", per_round)
        object.__setattr__(self, "_starts", [job.start for job in self.jobs[:per_round]])

    @property
    def jobs_per_part(self) -> int:
        return self._per_round

    def locate(self, experiment: int) -> tuple[int, int]:
        """Job index and index within that job of the first part of ``experiment``."""
        j = bisect.bisect_right(self._starts, experiment) - 1
        return j, experiment - self._starts[j]

    def parts(self, experiment: int) -> list[tuple[int, int]]:
        """(job index, index within that job) of every part of ``experiment``, in part order."""
        j, k = self.locate(experiment)
        return [(p * self._per_round + j, k) for p in range(self.n_parts)]

    def to_dict(self) -> dict:
        return {
            "n_experiments": self.n_experiments,
            "n_parts": self.n_parts,
            "jobs": [[j.start, j.stop, j.part, j.shots] for j in self.jobs],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Plan:
        jobs = tuple(
            JobSpec(i, start, stop, part, shots)
            for i, (start, stop, part, shots) in enumerate(data["jobs"])
        )
        return cls(data["n_experiments"], jobs, data["n_parts"])


def chunk_size(
    n_experiments: int, backend_limit: int | None, max_experiments_per_job: int | None
) -> int:
    """The number of experiments per job.

    The backend's own limit when it states one, lowered (never raised) by
    ``max_experiments_per_job``; all experiments in one job when neither is set.
    """
    limits = [x for x in (backend_limit, max_experiments_per_job) if x]
    return max(1, min(limits)) if limits else max(1, n_experiments)


MAX_SHOTS = 2**31 - 1  # simulators and services count shots in 32-bit signed integers
MAX_SHOT_PARTS = 1000  # more parts per experiment than this is a mistake, not a plan


def check_shots(shots: int, max_shots: int | None, stated: str = "") -> None:
    """Refuse shot counts that cannot be meant, before anything is submitted.

    Raises:
        ValueError: more than 2**31 - 1 shots, or more than ``MAX_SHOT_PARTS`` parts of
            ``max_shots`` each (``stated`` says where that limit comes from).
    """
    if shots > MAX_SHOTS:
        raise ValueError(
            f"shots={shots} is more than {MAX_SHOTS} (2**31 - 1), the most shots a simulator "
            "or service counts; nothing was submitted"
        )
    if max_shots and -(-shots // max_shots) > MAX_SHOT_PARTS:
        raise ValueError(
            f"shots={shots} at most {max_shots} per job{stated} would cut every experiment into "
            f"{-(-shots // max_shots)} parts (at most {MAX_SHOT_PARTS}): lower shots or raise "
            "max_shots_per_job; nothing was submitted"
        )


def split_shots(shots: int, max_shots: int | None) -> list[int]:
    """Shot counts of the parts of an experiment of ``shots`` shots, none above ``max_shots``.

    The parts are as equal as possible, the larger ones first: 10 shots at most 4 per job give
    ``[4, 3, 3]``.
    """
    if not max_shots or shots <= max_shots:
        return [shots]
    n = math.ceil(shots / max_shots)
    q, r = divmod(shots, n)
    return [q + 1] * r + [q] * (n - r)


def payload_bounds(sizes: list[int], chunk: int, max_bytes: int) -> list[int]:
    """Job boundaries for experiments of the given payload sizes: consecutive runs of at most
    ``chunk`` experiments and at most ``max_bytes`` bytes in all.

    Returns:
        The start index of every job, then the number of experiments.

    Raises:
        ValueError: one experiment alone is over ``max_bytes``.
    """
    bounds = [0]
    total = 0
    for i, size in enumerate(sizes):
        if size > max_bytes:
            raise ValueError(
                f"circuit {i} alone takes {size} bytes, over the backend's limit of {max_bytes} "
                "bytes per job; make it smaller (fewer gates or parameters) to run it here"
            )
        if i > bounds[-1] and (i - bounds[-1] >= chunk or total + size > max_bytes):
            bounds.append(i)
            total = 0
        total += size
    bounds.append(len(sizes))
    return bounds


def make_plan(
    n_experiments: int,
    chunk: int,
    part_shots: list[int] | None = None,
    bounds: list[int] | None = None,
) -> Plan:
    """Plan ``n_experiments`` in jobs of ``chunk`` experiments, one round of jobs per shot part.

    ``bounds`` (from :func:`payload_bounds`) replaces the fixed chunk when jobs must also stay
    under a payload size.
    """
    if n_experiments < 1:
        raise ValueError("a plan needs at least one experiment")
    if chunk < 1:
        raise ValueError("chunk must be at least 1")
    if bounds is None:
        bounds = list(range(0, n_experiments, chunk)) + [n_experiments]
    parts = part_shots if part_shots and len(part_shots) > 1 else [None]
    jobs = []
    for p, shots in enumerate(parts):
        for start, stop in zip(bounds[:-1], bounds[1:]):
            jobs.append(JobSpec(len(jobs), start, stop, p, shots))
    return Plan(n_experiments, tuple(jobs), len(parts))
