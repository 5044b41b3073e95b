"""JobManager: runs many circuits on a backend as one job set, and finds stored job sets."""

from __future__ import annotations

import datetime
import os
import threading
import time
import uuid
import weakref
from typing import Any

from qiskit.providers.jobstatus import JOB_FINAL_STATES

from qjm.exceptions import JobManagerInvalidStateError, JobManagerUnknownJobSet
from qjm.kinds import kind_by_name, kind_for
from qjm.managedjobset import ManagedJobSet
from qjm.plan import Plan, check_shots, chunk_size, make_plan, payload_bounds, split_shots
from qjm.pubs import bounds as piece_bounds
from qjm.pubs import cut, piece_pub
from qjm.retry import RetryPolicy
from qjm.runoptions import (
    SEED_OPTION,
    check_parameter_binds,
    check_run_options,
    decode_run_options,
    effective_seed,
    encode_run_options,
    job_seeds,
    logger,
    primitive_job_seeds,
)
from qjm.store import Store, default_store_path
from qjm.summary import JobSetSummary, summarize
from qjm.transpiling import Transpiler, check_target, transpile_options
from qjm.validation import check_circuits, check_positive_int, check_tags, warm_up

DEFAULT_MAX_WORKERS = 8


def _backend_name(backend: Any) -> str | None:
    name = getattr(backend, "name", None)
    if callable(name):  # BackendV1 and older providers
        name = name()
    return None if name is None else str(name)


def _backend_limit(backend: Any, attribute: str) -> int | None:
    try:
        value = getattr(backend, attribute, None)
    except Exception:  # noqa: BLE001 - a backend that cannot say has no limit
        return None
    if value is None:
        config = getattr(backend, "configuration", None)
        try:
            value = getattr(config(), attribute, None) if callable(config) else None
        except Exception:  # noqa: BLE001
            value = None
    return int(value) if isinstance(value, int) and value > 0 else None


def _is_provider(obj: Any) -> bool:
    """An old-style provider (``get_backend``) rather than a backend (``run``)."""
    return (
        obj is not None
        and callable(getattr(obj, "get_backend", None))
        and not callable(getattr(obj, "run", None))
    )


def _running_here(job_set: ManagedJobSet) -> bool:
    """Whether a set of this process still has work under way: a submission or a fetch, a job
    waiting for a slot, or a job not finished on its backend (one status call per such job)."""
    if "_managed" not in job_set.__dict__:
        return False  # listed by job_sets() and never used: nothing of it runs here
    if job_set._waiting:
        return True
    for mj in job_set._managed:
        if not mj.submitted.is_set():
            return True
        if mj.fetch_future is not None and not mj.fetch_future.done():
            return True
        if mj.job is not None and mj.outcome is None:
            status = mj.status()
            if status is not None and status not in JOB_FINAL_STATES:
                return True
    return False


class _JobSets:
    """The job sets of a manager, by id: held while they have work under way, and only weakly
    once finished, so that a set its user drops is freed (its results are in the store, and
    ``retrieve_job_set`` reads them back). With a ``":memory:"`` store every set is held: it is
    all there is of it."""

    def __init__(self, keep_all: bool):
        self._keep_all = keep_all
        self._held: dict[str, ManagedJobSet] = {}
        self._weak: weakref.WeakValueDictionary[str, ManagedJobSet] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()

    def get(self, job_set_id: str) -> ManagedJobSet | None:
        with self._lock:
            found = self._held.get(job_set_id)
            return found if found is not None else self._weak.get(job_set_id)

    def add(self, job_set: ManagedJobSet, running: bool) -> ManagedJobSet:
        """Register ``job_set`` (or return the set already registered under its id)."""
        with self._lock:
            job_set_id = job_set.job_set_id()
            found = self._held.get(job_set_id)
            if found is None:
                found = self._weak.get(job_set_id)
            if found is not None:
                return found
            if running or self._keep_all:
                self._held[job_set_id] = job_set
            else:
                self._weak[job_set_id] = job_set
            ref = weakref.ref(self)

            def hook(js: ManagedJobSet, running: bool, ref: Any = ref) -> None:
                sets = ref()
                if sets is not None:
                    sets.mark(js, running)

            job_set._on_finished = hook
            return job_set

    def mark(self, job_set: ManagedJobSet, running: bool) -> None:
        """A set started work again (held) or finished it (held weakly)."""
        if self._keep_all:
            return
        job_set_id = job_set.job_set_id()
        with self._lock:
            if running:
                self._weak.pop(job_set_id, None)
                self._held[job_set_id] = job_set
            elif self._held.get(job_set_id) is job_set:
                del self._held[job_set_id]
                self._weak[job_set_id] = job_set

    def pop(self, job_set_id: str) -> ManagedJobSet | None:
        with self._lock:
            found = self._held.pop(job_set_id, None)
            weak = self._weak.pop(job_set_id, None)
            return found if found is not None else weak

    def values(self) -> list[ManagedJobSet]:
        """The sets alive, oldest first."""
        with self._lock:
            sets = {**dict(self._weak.items()), **self._held}
        return sorted(sets.values(), key=lambda s: s._created)


class JobManager:
    """Runs many circuits on a backend as one job set, and finds stored job sets.

    The manager holds a job set while it has work under way; once finished, only while someone
    else does (a set dropped by its user is freed; ``retrieve_job_set`` reads it back from the
    store). With ``store=":memory:"`` it holds every set, since nothing else keeps them.

    Args:
        store: the SQLite file that keeps job sets and results; by default
            ``$QJM_HOME/jobsets.sqlite`` (``QJM_HOME`` defaults to ``~/.qjm``), read when the
            manager is created. ``":memory:"`` keeps nothing beyond this process.
    """

    def __init__(self, store: str | os.PathLike | None = None):
        self._store = Store(default_store_path() if store is None else store)
        self._job_sets = _JobSets(keep_all=self._store.path == ":memory:")
        self._lock = threading.Lock()

    @property
    def store_path(self) -> str:
        return self._store.path

    def run(
        self,
        circuits: Any,
        backend: Any = None,
        name: str | None = None,
        max_experiments_per_job: int | None = None,
        max_workers: int = DEFAULT_MAX_WORKERS,
        tags: list[str] | None = None,
        max_shots_per_job: int | None = None,
        job_tags: list[str] | None = None,
        check_options: bool = True,
        job_share_level: Any = None,
        sampler: Any = None,
        estimator: Any = None,
        max_pubs_per_job: int | None = None,
        max_executions_per_job: int | None = None,
        retry: RetryPolicy | None = None,
        max_active_jobs: int | None = None,
        transpile: bool | dict[str, Any] = False,
        optimization_level: int | None = None,
        transpile_processes: int | None = None,
        **run_options: Any,
    ) -> ManagedJobSet:
        """Split the work into jobs and submit them concurrently; returns at once.

        The whole batch is checked before anything is submitted. Exactly one of ``backend``
        (circuits), ``sampler`` and ``estimator`` (PUBs) says what runs the work.

        Args:
            circuits: a ``QuantumCircuit`` or a list of them; with ``sampler=`` or
                ``estimator=``, a list of PUBs.
            backend: the backend to run circuits on (any ``BackendV2``).
            sampler: a Sampler V2 to run sampler PUBs on (``shots=`` goes to its ``run``).
            estimator: an Estimator V2 to run estimator PUBs on (``precision=`` goes to its
                ``run``).
            max_pubs_per_job: at most this many PUBs (or pieces of PUBs) per job.
            max_active_jobs: at most this many unfinished jobs on the backend at once; the rest
                wait and are submitted as jobs finish (``run`` still returns at once, and
                ``results(timeout=)`` counts the waiting).
            retry: how failed submissions and fetches are retried (default
                ``qjm.RetryPolicy()``: 5 attempts on transient errors, full-jitter backoff from
                1 s to 60 s; a submission only when it certainly started no job).
            max_executions_per_job: at most this many executions per job (parameter sets x
                shots for a sampler, parameter sets x observables for an estimator); a PUB
                over it alone is cut along its parameter sweep and joined back in the results.
            name: a name for the job set.
            max_experiments_per_job: at most this many circuits per job; the backend's own limit
                (``max_circuits``) is never exceeded. None: the backend's limit, or one job.
            max_workers: threads that submit and fetch.
            transpile: transpile the circuits for the backend on the way in, with qiskit's
                preset pass manager (``generate_preset_pass_manager``; a dict gives it keywords
                such as ``seed_transpiler``), in this process and ``transpile_processes`` worker
                processes (default: one per CPU beyond the first, at most 8; 0: in this process
                only), each job submitted as soon as its circuits are transpiled. Without it, circuits the backend's ``Target`` cannot run as they
                are are refused before anything is submitted.
            optimization_level: the pass manager's level (0-3, default 2); implies ``transpile``.
            tags: tags of the job set (``job_tags`` is the old name).
            max_shots_per_job: split an experiment with more shots than this into parts, merged
                back in the results. None: the backend's ``max_shots`` where it states one.
            check_options: refuse a run option that looks like a typo of one the backend declares
                (``shot=1000``: "did you mean 'shots'?"); False passes every keyword on unchecked.
            job_share_level: accepted from old scripts of the IBMQ job manager and ignored (IBM
                Quantum no longer has job share levels); it is not passed to the backend.
            **run_options: passed to ``backend.run`` as given (``shots``, ``memory``, ...). Options
                the backend does not declare are passed on too, and logged once. With
                ``seed_simulator``, the job starting at experiment ``k`` gets
                ``seed_simulator + 2113 * k`` (Aer's own rule inside one job), so a split run
                gives the samples of the unsplit one; shot parts get seeds of their own.
                ``parameter_binds`` (one dict per circuit) is split with the circuits.

        Returns:
            The job set; submission goes on in the background.

        Raises:
            ValueError: no circuits, a limit below 1, a run option that looks like a typo, or
                ``parameter_binds`` that do not give one value per parameter per circuit.
            TypeError: a non-circuit, or a limit that is not an integer.
        """
        kind = kind_for(backend, sampler, estimator)
        to_transpile = transpile_options(transpile, optimization_level)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a qjm.RetryPolicy, not {retry!r}")
        max_active_jobs = check_positive_int("max_active_jobs", max_active_jobs)
        if kind.name != "circuits":
            if to_transpile is not None:
                raise ValueError(
                    "transpile= and optimization_level= are for circuits on a backend=; for "
                    "primitives, transpile the PUBs' circuits (and apply_layout to estimator "
                    "observables) before run. Nothing was submitted."
                )
            return self._run_pubs(
                kind,
                circuits,
                name=name,
                tags=tags if tags is not None else job_tags,
                max_workers=max_workers,
                max_pubs_per_job=max_pubs_per_job,
                max_executions_per_job=max_executions_per_job,
                max_shots_per_job=max_shots_per_job,
                check_options=check_options,
                retry=retry,
                max_active_jobs=max_active_jobs,
                unused={
                    "max_experiments_per_job": max_experiments_per_job,
                    "job_share_level": job_share_level,
                },
                run_options=run_options,
            )
        for unused, value in (
            ("max_pubs_per_job", max_pubs_per_job),
            ("max_executions_per_job", max_executions_per_job),
        ):
            if value is not None:
                raise ValueError(f"{unused} is for sampler= and estimator= work, not backend=")
        circuits = check_circuits(circuits)
        max_experiments_per_job = check_positive_int(
            "max_experiments_per_job", max_experiments_per_job
        )
        max_workers = check_positive_int("max_workers", max_workers, allow_none=False)
        max_shots_per_job = check_positive_int("max_shots_per_job", max_shots_per_job)
        if job_tags is not None and tags is not None:
            raise ValueError("give tags or job_tags (the old name), not both")
        tags = check_tags(tags if tags is not None else job_tags)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string, not {name!r}")
        if job_share_level is not None:
            logger.warning(
                "job_share_level=%r ignored: IBM Quantum no longer has job share levels",
                job_share_level,
            )
        check_run_options(backend, run_options, check=bool(check_options))
        check_parameter_binds(run_options.get("parameter_binds"), len(circuits))
        if to_transpile is None:
            check_target(circuits, backend)
        processes = transpile_processes
        if processes is not None and (
            isinstance(processes, bool) or not isinstance(processes, int) or processes < 0
        ):
            raise ValueError(f"transpile_processes must be an integer >= 0, not {processes!r}")
        seed = effective_seed(backend, run_options)

        plan = self._plan(
            circuits, backend, max_experiments_per_job, max_shots_per_job, run_options
        )
        stored_options = dict(run_options)
        if seed is not None:
            stored_options[SEED_OPTION] = seed
        options_json, unstored = encode_run_options(stored_options)
        job_set = ManagedJobSet(
            job_set_id=uuid.uuid4().hex,
            name=name,
            tags=tags,
            plan=plan,
            names=[c.name for c in circuits],
            backend=backend,
            backend_name=_backend_name(backend),
            store=self._store,
            max_workers=max_workers,
            seeds=job_seeds(plan, seed),
            unstored_options=unstored,
            kind=kind,
            retry=retry,
            max_active_jobs=max_active_jobs,
        )
        # a circuit goes to one job unless it is given twice or its shots run in parts (the
        # transpiler's threads read every circuit)
        warm_up(circuits, only_shared=plan.n_parts == 1 and to_transpile is None)
        if to_transpile is not None:
            job_set._transpiler = Transpiler(backend, to_transpile, len(circuits), processes)
        return self._start(job_set, plan.to_dict(), options_json, circuits, run_options)

    def _start(
        self,
        job_set: ManagedJobSet,
        plan: dict,
        options_json: str,
        items: list,
        run_options: dict[str, Any],
    ) -> ManagedJobSet:
        """Store a new job set and start submitting its jobs."""
        plan = dict(plan, kind=job_set._kind_name)
        if job_set._layout is not None:
            plan["layout"] = job_set._layout
        self._store.add_job_set(
            job_set.job_set_id(),
            job_set.name(),
            job_set.tags(),
            job_set.backend_name(),
            list(job_set._index.names),
            plan,
            options_json,
        )
        self._job_sets.add(job_set, running=True)
        job_set._submit_all(items, run_options)
        return job_set

    def _run_pubs(
        self,
        kind: Any,
        work: Any,
        *,
        name: str | None,
        tags: Any,
        max_workers: int,
        max_pubs_per_job: int | None,
        max_executions_per_job: int | None,
        max_shots_per_job: int | None,
        check_options: bool,
        retry: RetryPolicy | None,
        max_active_jobs: int | None,
        unused: dict[str, Any],
        run_options: dict[str, Any],
    ) -> ManagedJobSet:
        """``run`` for sampler and estimator work: PUBs cut into pieces, pieces into jobs."""
        for key, value in unused.items():
            if value is not None:
                raise ValueError(f"{key} is for backend= work, not {kind.name}=")
        max_pubs_per_job = check_positive_int("max_pubs_per_job", max_pubs_per_job)
        max_executions_per_job = check_positive_int(
            "max_executions_per_job", max_executions_per_job
        )
        max_workers = check_positive_int("max_workers", max_workers, allow_none=False)
        max_shots_per_job = check_positive_int("max_shots_per_job", max_shots_per_job)
        if max_shots_per_job is not None and kind.name != "sampler":
            raise ValueError("max_shots_per_job splits sampler PUBs; an estimator has no shots")
        if kind.name == "sampler":
            # the shots a job may take, as the primitive's backend states them
            stated = _backend_limit(kind.backend(), "max_shots")
            limits = [x for x in (max_shots_per_job, stated) if x]
            max_shots_per_job = min(limits) if limits else None
        tags = check_tags(tags)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string, not {name!r}")
        if "shots" in run_options and run_options["shots"] is not None:
            check_positive_int("shots", run_options["shots"])
        kind.check_options(run_options, check=bool(check_options))
        pubs = kind.coerce(work, run_options)
        if kind.name == "sampler" and (max_shots_per_job or max_executions_per_job):
            unknown = [i for i, pub in enumerate(pubs) if pub.shots is None]
            if unknown:
                raise ValueError(
                    f"the shots of PUB {unknown[0]} are not known (the PUB gives none, run() got "
                    "no shots= and the sampler states no default_shots), so max_shots_per_job "
                    "and max_executions_per_job cannot be applied: pass shots=. Nothing was "
                    "submitted."
                )
        for pub in pubs:
            if getattr(pub, "shots", None):
                check_shots(int(pub.shots), max_shots_per_job)
        pieces = cut(pubs, max_executions_per_job, max_shots_per_job)
        bounds = piece_bounds(pieces, max_pubs_per_job, max_executions_per_job)
        plan = make_plan(len(pieces), len(pieces), None, bounds)
        seeds = primitive_job_seeds(pieces, plan, kind.seed(), kind.seed_stride())
        items = [piece_pub(pubs[p.pub], p) for p in pieces]
        warm_up(pub.circuit for pub in pubs)
        options_json, unstored = encode_run_options(dict(run_options))
        job_set = ManagedJobSet(
            job_set_id=uuid.uuid4().hex,
            name=name,
            tags=tags,
            plan=plan,
            names=[pubs[p.pub].circuit.name for p in pieces],
            backend=kind.target,
            backend_name=kind.target_name(),
            store=self._store,
            max_workers=max_workers,
            seeds=seeds,
            unstored_options=unstored,
            kind=kind,
            retry=retry,
            max_active_jobs=max_active_jobs,
            layout={
                "shapes": [list(pub.shape) for pub in pubs],
                "pieces": [[p.pub, p.start, p.stop, p.part] for p in pieces],
            },
        )
        return self._start(job_set, plan.to_dict(), options_json, items, run_options)

    @staticmethod
    def _plan(
        circuits: list,
        backend: Any,
        max_experiments_per_job: int | None,
        max_shots_per_job: int | None,
        run_options: dict[str, Any],
    ) -> Plan:
        chunk = chunk_size(
            len(circuits), _backend_limit(backend, "max_circuits"), max_experiments_per_job
        )
        max_shots = max_shots_per_job or _backend_limit(backend, "max_shots")
        shots = run_options.get("shots")
        if shots is None:
            options = getattr(backend, "options", None)
            shots = getattr(options, "shots", None) if options is not None else None
        if isinstance(shots, int):
            stated = "" if max_shots_per_job else " (the backend's max_shots)"
            check_shots(int(shots), max_shots, stated)
        part_shots = split_shots(int(shots), max_shots) if isinstance(shots, int) else None
        bounds = None
        max_bytes = _backend_limit(backend, "max_payload_bytes")
        measure = getattr(backend, "payload_size", None)
        if max_bytes and callable(measure):
            # one circuit at a time: a conservative size for a job (each count carries the
            # request's own overhead once more)
            sizes = [int(measure([c], **run_options)) for c in circuits]
            bounds = payload_bounds(sizes, chunk, max_bytes)
        return make_plan(len(circuits), chunk, part_shots, bounds)

    def job_sets(self, name: str | None = None) -> list[ManagedJobSet]:
        """Job sets in the store, this process's and earlier ones', oldest first.

        Reads only each set's id, name, tags, backend name and creation time: a set not used in
        this process yet reads its plan, jobs and kept outcomes on first use.

        Args:
            name: only the sets with this name.
        """
        out = []
        for row in self._store.job_set_listing(name):
            live = self._job_sets.get(row["id"])
            if live is None:
                live = ManagedJobSet(
                    job_set_id=row["id"],
                    name=row["name"],
                    tags=row["tags"],
                    plan=None,
                    names=None,
                    backend=None,
                    backend_name=row["backend_name"],
                    store=self._store,
                    max_workers=DEFAULT_MAX_WORKERS,
                    created=row["created"],
                    materialize=self._materialize,
                )
                live._retrieved = True
                live = self._job_sets.add(live, running=False)
            out.append(live)
        return out

    def _materialize(self, job_set: ManagedJobSet) -> None:
        """What a set listed by :meth:`job_sets` reads on first use: its plan and jobs."""
        row = self._store.job_set(job_set.job_set_id(), names=False)
        if row is None:
            raise JobManagerUnknownJobSet(
                f"no job set with id {job_set.job_set_id()!r} in the store {self._store.path}"
            )
        job_set._set_plan(**self._plan_of(row, job_set._backend))
        job_set._load_from_store()

    def retrieve_job_set(
        self,
        job_set_id: str,
        backend: Any = None,
        refresh: bool = False,
        max_workers: int | None = None,
        provider: Any = None,
        sampler: Any = None,
        estimator: Any = None,
    ) -> ManagedJobSet:
        """A job set from the store, by id, with every result fetched so far.

        Args:
            job_set_id: the id that ``ManagedJobSet.job_set_id()`` gave.
            backend: the backend the set ran on; needed only to fetch results not yet stored
                (it must be able to ``retrieve_job(job_id)``).
            refresh: reattach to the backend's jobs now rather than on first use.
            max_workers: threads that reattach and fetch (default 8, or what the set had when
                it was created in this process).
            provider: the old job manager's second argument: a provider whose
                ``get_backend(name)`` gives the backend the set ran on (by its stored name).
                A provider given as the second positional argument is taken as one too.
            sampler: for a set of sampler PUBs, the sampler whose service can look up its jobs
                by id (qiskit-ibm-runtime's); local samplers cannot, and only what the store
                holds is then available.
            estimator: the same for a set of estimator PUBs.

        Raises:
            JobManagerUnknownJobSet: no job set with that id is in the store.
            TypeError: both ``backend`` and ``provider``, or a provider without ``get_backend``.
        """
        max_workers = check_positive_int("max_workers", max_workers)
        targets = [t for t in (backend, sampler, estimator) if t is not None]
        if len(targets) > 1:
            raise TypeError("give at most one of backend=, sampler= and estimator=")
        backend = targets[0] if targets else None
        if provider is None and _is_provider(backend):
            provider, backend = backend, None
        if provider is not None:
            if backend is not None:
                raise TypeError("give backend= or provider=, not both")
            backend = self._backend_from_provider(job_set_id, provider)
        job_set = self._get(job_set_id, backend)
        if max_workers is not None:
            job_set._set_max_workers(max_workers)
        if refresh:
            job_set._attached = False
            job_set._attach()
        return job_set

    def _backend_from_provider(self, job_set_id: str, provider: Any) -> Any:
        get_backend = getattr(provider, "get_backend", None)
        if not callable(get_backend):
            raise TypeError(
                f"provider {provider!r} has no get_backend(name): pass the backend the set ran "
                "on as backend= instead (qjm takes backends, not providers)"
            )
        row = self._store.job_set(job_set_id)
        if row is None:
            raise JobManagerUnknownJobSet(
                f"no job set with id {job_set_id!r} in the store {self._store.path}"
            )
        name = row["backend_name"]
        try:
            return get_backend(name)
        except Exception as exc:
            raise TypeError(
                f"provider.get_backend({name!r}) failed for job set {job_set_id}: pass the "
                "backend as backend= instead"
            ) from exc

    def _get(self, job_set_id: str, backend: Any = None) -> ManagedJobSet:
        live = self._job_sets.get(job_set_id)
        if live is not None:
            if backend is not None and live._backend is None:
                live._backend = backend
                live._attached = False
            return live
        row = self._store.job_set(job_set_id, names=False)  # names: read on first look-up
        if row is None:
            raise JobManagerUnknownJobSet(
                f"no job set with id {job_set_id!r} in the store {self._store.path}"
            )
        job_set = ManagedJobSet(
            job_set_id=row["id"],
            name=row["name"],
            tags=row["tags"],
            plan=None,
            names=None,
            backend=backend,
            backend_name=row["backend_name"],
            store=self._store,
            max_workers=DEFAULT_MAX_WORKERS,
            created=row["created"],
        )
        job_set._set_plan(**self._plan_of(row, backend))
        job_set._load_from_store()
        return self._job_sets.add(job_set, running=False)

    @staticmethod
    def _plan_of(row: dict, backend: Any) -> dict[str, Any]:
        """What ``ManagedJobSet._set_plan`` takes, from a set's row of the store."""
        plan = Plan.from_dict(row["plan"])
        kind = kind_by_name(row["plan"].get("kind"), backend)
        options, unstored = decode_run_options(row["run_options"])
        seed = options.get(SEED_OPTION)
        return {
            "plan": plan,
            "names": None,
            "seeds": job_seeds(plan, seed if isinstance(seed, int) else None)
            if kind.name == "circuits"
            else None,
            "kind": kind,
            "layout": row["plan"].get("layout"),
            "run_options": options,
            "unstored_options": unstored,
        }

    def report(self, detailed: bool = True) -> str:
        """The reports of the job sets of this manager (this process's)."""
        sets = self._job_sets.values()
        if not sets:
            return "No job sets in this manager."
        return "\n\n".join(s.report(detailed=detailed) for s in sets)

    # -- housekeeping --------------------------------------------------------------------------

    def job_set_summaries(self, name: str | None = None) -> list[JobSetSummary]:
        """Every job set in the store (oldest first; with ``name``, those of that name) with
        its jobs counted by state: done, failed (of which partial), running, not submitted,
        cancelled. Read from the store alone: no backend call, no result decoded (``qjm list``).
        """
        live = {s.job_set_id(): s for s in self._job_sets.values()}
        out = []
        for entry in self._store.job_set_overview(name):
            job_set = live.get(entry["id"])
            kept = None
            managed = job_set.__dict__.get("_managed") if job_set is not None else None
            if managed is not None:  # what this process holds (no backend call)
                kept = {mj.index: mj.outcome for mj in managed if mj.outcome is not None}
            out.append(summarize(entry, kept))
        return out

    def delete_job_set(self, job_set_id: str) -> None:
        """Remove a job set from the store: its jobs, kept results, journal, attempt history,
        every row of it, in one transaction; the space is given back to the file system.

        A set still running in this process (a submission or a fetch under way, or a job not
        finished on its backend) is refused rather than cancelled: ``cancel()`` it, or wait for
        its ``results()``, first. A set that another process is still running cannot be seen
        from here; that process's later writes leave rows that :meth:`gc` removes.

        Raises:
            JobManagerUnknownJobSet: no job set with that id is in the store.
            JobManagerInvalidStateError: the set is still running in this process.
        """
        self.delete_job_sets([job_set_id])

    def delete_job_sets(self, job_set_ids: list[str]) -> list[str]:
        """Remove several job sets, as :meth:`delete_job_set` does, all or none (an unknown id
        or a set still running in this process removes nothing). Returns the ids removed."""
        if isinstance(job_set_ids, str):
            job_set_ids = [job_set_ids]
        ids = list(dict.fromkeys(job_set_ids))
        for job_set_id in ids:
            live = self._job_sets.get(job_set_id)
            if live is not None and _running_here(live):
                raise JobManagerInvalidStateError(
                    f"job set {job_set_id} is still running in this process: cancel() it or "
                    "wait for its results() before deleting it; nothing was deleted"
                )
        removed = self._store.delete_job_sets(ids)
        self._forget(removed)
        return removed

    def gc(self, older_than: float | datetime.timedelta) -> list[str]:
        """Remove the job sets created more than ``older_than`` ago (seconds, or a
        ``timedelta``), except those still running in this process, and rows left behind by
        sets removed while a process still ran them; then free the space. Returns the ids
        removed (``qjm gc --older-than 7d``)."""
        if isinstance(older_than, datetime.timedelta):
            older_than = older_than.total_seconds()
        if not isinstance(older_than, (int, float)) or not older_than >= 0:
            raise ValueError(f"older_than must be a duration of 0 s or more, not {older_than!r}")
        live = self._job_sets.values()
        keep = [s.job_set_id() for s in live if _running_here(s)]
        removed = self._store.delete_job_sets_created_before(
            time.time() - float(older_than), keep=keep
        )
        self._forget(removed)
        return removed

    def _forget(self, job_set_ids: list[str]) -> None:
        """Drop removed sets from this manager and stop their pools."""
        for job_set_id in job_set_ids:
            live = self._job_sets.pop(job_set_id)
            if live is not None:
                live.shutdown(wait=False, cancel_futures=True)

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Stop the thread pools of every job set of this manager."""
        for job_set in self._job_sets.values():
            if "_managed" in job_set.__dict__:  # a listed set never used has nothing running
                job_set.shutdown(wait=wait, cancel_futures=cancel_futures)

    def __enter__(self) -> JobManager:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
