"""Run options: which are refused, what each job gets of them (seeds, parameter binds), how they
are stored.

Every keyword of :meth:`JobManager.run` that qjm does not take itself goes to ``backend.run`` as
given. The check before submission exists to catch typos (``shot=1000``): a keyword is refused only
when the backend does not know it and it is close to one it does know. Options that real clients
pass to backends that do not declare them (``meas_level``, ``rep_delay``, ``coupling_map``...) are
passed on and logged once.

Seeds: Aer seeds experiment ``i`` of a job with ``seed_simulator + AER_SEED_STRIDE * i``. A job
that starts at experiment ``k`` is given ``seed_simulator + AER_SEED_STRIDE * k``, so a set split
into jobs gives the same samples as one job with that seed. Shot parts after the first get bases
derived with ``numpy.random.SeedSequence`` from the seed and the part number, checked so that no two
experiments of the set (in any part) ever get the same seed.

Storage (the ``run_options`` of a job set in the store) is JSON, with these encodings for what
JSON lacks: ``{"$parameter": name, "uuid": hex}`` for a circuit ``Parameter``, ``{"$items": [[key,
value], ...]}`` for a dict whose keys are not all strings, ``{"$tuple": [...]}``, ``{"$complex":
[re, im]}``, ``{"$ndarray": nested list, "dtype": str}``; anything else is kept in memory only and
stored as ``{"$unstored": type name, "repr": short repr}``, and ``report()`` names it.
"""

from __future__ import annotations

import difflib
import inspect
import json
import logging
import numbers
import threading
import uuid
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

# Aer 0.18 seeds experiment i of a job with seed_simulator + 2113 * i (measured; the seed tests
# compare a split run with the unsplit one, so a change in Aer shows there).
AER_SEED_STRIDE = 2113
SEED_OPTION = "seed_simulator"
_SEED_LIMIT = 1 << 63  # seeds stay below this (Aer takes an unsigned 64-bit seed)

# Options that qiskit's clients pass to backends (the old run-config vocabulary of IBM backends,
# transpiler arguments of old scripts, the old job manager's arguments): never refused as a typo
# even where the backend does not declare them.
CLIENT_OPTIONS = frozenset(
    {
        "meas_level",
        "meas_return",
        "memory_slots",
        "memory_slot_size",
        "rep_delay",
        "rep_time",
        "init_qubits",
        "qubit_lo_freq",
        "meas_lo_freq",
        "qubit_lo_range",
        "meas_lo_range",
        "schedule_los",
        "use_measure_esp",
        "job_tags",
        "max_credits",
        "seed",
        "seed_simulator",
        "parameter_binds",
        "noise_model",
        "coupling_map",
        "basis_gates",
        "initial_layout",
        "optimization_level",
        "seed_transpiler",
        "backend_properties",
        "parametric_pulses",
        "shots",
        "memory",
    }
)

# How close an unknown keyword must be to a known one to be taken for a typo of it
# (difflib ratio: "shot"/"shots" 0.89, "memroy"/"memory" 0.83, "init_qubits"/"blocking_qubits" 0.69).
TYPO_CUTOFF = 0.8

_logged: set[tuple[str | None, str]] = set()
_logged_lock = threading.Lock()


def backend_option_names(backend: Any) -> set[str]:
    """The run options a backend declares: fields of ``backend.options`` and keyword parameters
    of ``backend.run``."""
    names: set[str] = set()
    options = getattr(backend, "options", None)
    if options is not None:
        try:
            names.update(options.keys())
        except AttributeError:
            names.update(vars(options))
    try:
        params = list(inspect.signature(backend.run).parameters.values())
    except (TypeError, ValueError):
        params = []
    for param in params[1:]:  # the first parameter takes the circuits
        if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            names.add(param.name)
    return names


def check_run_options(backend: Any, run_options: dict[str, Any], check: bool = True) -> list[str]:
    """Refuse a keyword that looks like a typo of one the backend knows; return the rest of the
    keywords it does not declare (they are passed on, and logged once per backend and name).

    A backend with ``run_options_strict = True`` (such as :class:`qjm.remote.RemoteBackend`,
    whose service refuses what its backend does not take) gets every unknown keyword refused.

    Raises:
        ValueError: a keyword close to a known one ("did you mean 'shots'?"), any unknown one on
            a strict backend, or a non-positive ``shots``.
    """
    from qjm.validation import check_positive_int

    if "shots" in run_options and run_options["shots"] is not None:
        check_positive_int("shots", run_options["shots"])
    if not check:
        return []
    known = backend_option_names(backend)
    unknown = sorted(k for k in run_options if k not in known)
    strict = bool(getattr(backend, "run_options_strict", False))
    refused = []
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6 if strict else TYPO_CUTOFF)
        if strict or (close and key not in CLIENT_OPTIONS):
            refused.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    name = getattr(backend, "name", None)
    name = name() if callable(name) else name
    if refused:
        raise ValueError(
            f"unknown run option {', '.join(refused)} for backend {name}: it is neither a field "
            "of backend.options nor a parameter of backend.run"
            + (
                " (this backend refuses options it does not declare)"
                if strict
                else "; run(..., check_options=False) passes it on anyway"
            )
            + ". Nothing was submitted."
        )
    for key in unknown:
        with _logged_lock:
            first = (name, key) not in _logged
            _logged.add((name, key))
        if first:
            logger.warning(
                "run option %r is not declared by backend %s; passed on to backend.run as given",
                key,
                name,
            )
    return unknown


# -- per job ----------------------------------------------------------------------------------


def check_parameter_binds(binds: Any, n_circuits: int) -> None:
    """Aer's ``parameter_binds``: one dict per circuit, one value per parameter.

    Raises:
        ValueError: not one dict per circuit, or a parameter with several values (Aer would run
            the circuit once per value, several experiments where qjm counts one).
    """
    if binds is None:
        return
    if not isinstance(binds, (list, tuple)) or len(binds) != n_circuits:
        got = len(binds) if isinstance(binds, (list, tuple)) else type(binds).__name__
        raise ValueError(
            f"parameter_binds must be a list of one dict per circuit ({n_circuits}), got {got}; "
            "nothing was submitted"
        )
    for i, bind in enumerate(binds):
        if not isinstance(bind, dict):
            raise ValueError(f"parameter_binds[{i}] must be a dict of parameter to values")
        for param, values in bind.items():
            n = len(values) if isinstance(values, (list, tuple, np.ndarray)) else 1
            if n != 1:
                raise ValueError(
                    f"parameter_binds[{i}] gives {param} {n} values: Aer would run circuit {i} "
                    f"{n} times, as {n} experiments, and qjm counts one experiment per circuit. "
                    "Give one value per parameter (one circuit per binding, e.g. with "
                    "circuit.assign_parameters), or run them as sampler PUBs. Nothing was submitted."
                )


def part_seed_bases(seed: int, n_parts: int, n_experiments: int) -> list[int]:
    """The seed of experiment 0 in each shot part: ``seed`` for part 0, SeedSequence-derived
    bases after it, such that the seeds ``base + AER_SEED_STRIDE * i`` (i < n_experiments) of
    two parts never meet."""
    bases = [int(seed)]
    span = AER_SEED_STRIDE * n_experiments
    for part in range(1, n_parts):
        attempt = 0
        while True:
            sequence = np.random.SeedSequence(entropy=abs(int(seed)), spawn_key=(part, attempt))
            base = int(sequence.generate_state(1, np.uint64)[0]) % (_SEED_LIMIT - span)
            if all(
                (base - other) % AER_SEED_STRIDE or abs(base - other) >= span for other in bases
            ):
                break
            attempt += 1
        bases.append(base)
    return bases


def shot_part_seeds(seed: int, n: int) -> list[int]:
    """Seeds for shot parts 1..n of a primitive's PUBs (part 0 keeps the primitive's own seed):
    derived with ``numpy.random.SeedSequence`` from ``seed`` and the part number, all distinct
    and none equal to ``seed``."""
    out: list[int] = []
    for part in range(1, n + 1):
        attempt = 0
        while True:
            sequence = np.random.SeedSequence(entropy=abs(int(seed)), spawn_key=(part, attempt))
            value = int(sequence.generate_state(1, np.uint32)[0])
            if value != seed and value not in out:
                break
            attempt += 1
        out.append(value)
    return out


def primitive_job_seeds(pieces: list, plan: Any, seed: int | None, stride: int) -> list[int | None]:
    """The seed each job of PUB pieces runs its primitive with (None: the primitive's own).

    Shot part 0 keeps the primitive's seed; later parts get :func:`shot_part_seeds`. Where the
    primitive moves its seed by ``stride`` per bound circuit inside a job (Aer), the job whose
    first piece comes after ``k`` parameter sets of its part is given ``base + stride * k``, so
    that a split run samples as the unsplit run does.
    """
    if seed is None:
        return [None] * len(plan.jobs)
    n_parts = 1 + max(p.part for p in pieces)
    bases = [seed] + shot_part_seeds(seed, n_parts - 1)
    before = []  # parameter sets of the same part before each piece
    count: dict[int, int] = {}
    for piece in pieces:
        before.append(count.get(piece.part, 0))
        count[piece.part] = count.get(piece.part, 0) + piece.stop - piece.start
    out: list[int | None] = []
    for job in plan.jobs:
        first = pieces[job.start]
        value = bases[first.part] + stride * before[job.start]
        out.append(None if value == seed else value)
    return out


def job_seeds(plan: Any, seed: int | None) -> list[int | None]:
    """The ``seed_simulator`` of every job of ``plan`` (None for all when ``seed`` is None)."""
    if seed is None:
        return [None] * len(plan.jobs)
    bases = part_seed_bases(seed, plan.n_parts, plan.n_experiments)
    return [bases[job.part] + AER_SEED_STRIDE * job.start for job in plan.jobs]


def effective_seed(backend: Any, run_options: dict[str, Any]) -> int | None:
    """The seed the jobs derive theirs from: the run option, else the backend's own option."""
    seed = run_options.get(SEED_OPTION)
    if seed is None:
        options = getattr(backend, "options", None)
        seed = getattr(options, SEED_OPTION, None) if options is not None else None
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed_simulator must be an integer, not {seed!r}")
    return int(seed)


def job_options(
    run_options: dict[str, Any], start: int, stop: int, shots: int | None, seed: int | None
) -> dict[str, Any]:
    """The options of one job of experiments ``start .. stop-1``."""
    options = dict(run_options)
    if shots is not None:
        options["shots"] = shots
    if seed is not None:
        options[SEED_OPTION] = seed
    binds = options.get("parameter_binds")
    if isinstance(binds, (list, tuple)):
        options["parameter_binds"] = list(binds[start:stop])
    return options


# -- storage ----------------------------------------------------------------------------------


def encode_run_options(run_options: dict[str, Any]) -> tuple[str, list[str]]:
    """The options as JSON (the encoding in the module docstring), and the names of those kept
    in memory only."""
    unstored: list[str] = []

    def enc(value: Any, name: str) -> Any:
        if value is None or isinstance(value, (str, bool)):
            return value
        if isinstance(value, numbers.Integral):
            return int(value)
        if isinstance(value, float):
            return value
        if isinstance(value, numbers.Real):
            return float(value)
        if isinstance(value, complex):
            return {"$complex": [value.real, value.imag]}
        if isinstance(value, np.ndarray) and value.dtype.kind in "biufc":
            items = value.tolist()
            return {"$ndarray": enc(items, name), "dtype": value.dtype.str}
        if isinstance(value, dict):
            if all(isinstance(k, str) for k in value):
                return {k: enc(v, name) for k, v in value.items()}
            return {"$items": [[enc(k, name), enc(v, name)] for k, v in value.items()]}
        if isinstance(value, list):
            return [enc(v, name) for v in value]
        if isinstance(value, tuple):
            return {"$tuple": [enc(v, name) for v in value]}
        from qiskit.circuit import Parameter

        if isinstance(value, Parameter):
            return {"$parameter": value.name, "uuid": value.uuid.hex}
        if name not in unstored:
            unstored.append(name)
        return {"$unstored": type(value).__name__, "repr": repr(value)[:200]}

    encoded = {key: enc(value, key) for key, value in run_options.items()}
    return json.dumps(encoded, sort_keys=True, allow_nan=True), unstored


def decode_run_options(text: str) -> tuple[dict[str, Any], list[str]]:
    """The inverse of :func:`encode_run_options`: the options, and the names of those that were
    not stored (their values are None here)."""
    unstored: list[str] = []

    def dec(value: Any, name: str) -> Any:
        if isinstance(value, list):
            return [dec(v, name) for v in value]
        if not isinstance(value, dict):
            return value
        if "$parameter" in value:
            from qiskit.circuit import Parameter

            return Parameter(str(value["$parameter"]), uuid=uuid.UUID(hex=str(value["uuid"])))
        if "$items" in value:
            return {_hashable(dec(k, name)): dec(v, name) for k, v in value["$items"]}
        if "$tuple" in value:
            return tuple(dec(v, name) for v in value["$tuple"])
        if "$complex" in value:
            re, im = value["$complex"]
            return complex(re, im)
        if "$ndarray" in value:
            return np.array(dec(value["$ndarray"], name), dtype=np.dtype(str(value["dtype"])))
        if "$unstored" in value:
            if name not in unstored:
                unstored.append(name)
            return None
        return {k: dec(v, name) for k, v in value.items()}

    raw = json.loads(text)
    return {key: dec(value, key) for key, value in raw.items()}, unstored


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value
