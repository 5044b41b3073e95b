"""PUBs: checked and coerced before anything is submitted, cut into pieces jobs accept. Pure, no I/O.

A PUB is one piece unless it alone is over ``max_executions_per_job``: then it is cut along its
parameter sweep (the flattened bindings of its shape) into pieces of at most that many executions,
and its results are joined back to its shape. A sampler PUB of more shots than
``max_shots_per_job`` is cut into shot parts (as equal as possible), whose BitArrays are joined
back with the shots of every part. Jobs take consecutive runs of pieces, at most
``max_pubs_per_job`` pieces and ``max_executions_per_job`` executions each.

Executions: a sampler PUB runs ``size x shots`` (``size`` is the number of parameter sets of its
shape, 1 for a PUB without parameters); an estimator PUB runs ``size`` (one per element of its
broadcast shape of observables and parameter sets).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Piece:
    """Parameter sets ``start .. stop-1`` of the flattened shape of PUB ``pub``; with ``shots``,
    shot part ``part`` of them, of that many shots."""

    pub: int
    start: int
    stop: int
    executions: int
    part: int = 0
    shots: int | None = None


def _size(shape: tuple[int, ...]) -> int:
    return math.prod(shape) if shape else 1


def coerce_sampler_pubs(work: Any, shots: int | None) -> list:
    """The work as ``SamplerPub`` objects, or a clear error naming the bad one.

    Raises:
        ValueError: no PUBs, or a PUB qiskit refuses (its message is kept).
        TypeError: something that is not a PUB.
    """
    from qiskit.primitives.containers.sampler_pub import SamplerPub

    return _coerce(work, lambda pub: SamplerPub.coerce(pub, shots), "sampler")


def coerce_estimator_pubs(work: Any, precision: float | None) -> list:
    """The work as ``EstimatorPub`` objects (each needs observables), or a clear error.

    Raises:
        ValueError: no PUBs, a PUB without observables, or one qiskit refuses.
        TypeError: something that is not a PUB.
    """
    from qiskit.circuit import QuantumCircuit
    from qiskit.primitives.containers.estimator_pub import EstimatorPub

    def one(pub: Any) -> Any:
        if isinstance(pub, QuantumCircuit) or (
            isinstance(pub, (tuple, list)) and len(pub) < 2 and not isinstance(pub, EstimatorPub)
        ):
            raise ValueError(
                "an estimator PUB needs observables: give (circuit, observables) or "
                "(circuit, observables, parameter_values[, precision])"
            )
        return EstimatorPub.coerce(pub, precision)

    return _coerce(work, one, "estimator")


def _coerce(work: Any, coerce: Any, what: str) -> list:
    from qiskit.circuit import QuantumCircuit

    if isinstance(work, (QuantumCircuit, str, bytes)) or not hasattr(work, "__iter__"):
        raise TypeError(
            f"PUBs for a {what} must be a list of PUBs (a circuit, or a tuple such as "
            f"(circuit, parameter_values)), not {type(work).__name__}"
        )
    items = list(work)
    if not items:
        raise ValueError(f"no PUBs to run: pass at least one PUB to the {what}")
    out = []
    for i, item in enumerate(items):
        try:
            out.append(coerce(item))
        except (ValueError, TypeError) as exc:
            raise type(exc)(
                f"PUB {i} is not a valid {what} PUB: {exc}. Nothing was submitted."
            ) from exc
        except Exception as exc:  # qiskit raises its own errors for some bad PUBs
            raise ValueError(
                f"PUB {i} is not a valid {what} PUB: {exc}. Nothing was submitted."
            ) from exc
    return out


def executions(pub: Any) -> int:
    """Executions of a PUB (see the module docstring)."""
    shots = getattr(pub, "shots", None)
    return _size(tuple(pub.shape)) * (int(shots) if shots else 1)


def cut(pubs: list, max_executions: int | None, max_shots: int | None = None) -> list[Piece]:
    """The pieces of the PUBs: whole PUBs, sweeps cut to ``max_executions``, and sampler PUBs of
    more than ``max_shots`` shots cut into shot parts.

    Pieces come in rounds of shot parts: every part 0 first (in PUB order), then every part 1...
    so that a job never holds two parts (each part may run with a seed of its own).
    """
    from qjm.plan import split_shots

    rounds: list[list[Piece]] = []
    for i, pub in enumerate(pubs):
        size = _size(tuple(pub.shape))
        shots = getattr(pub, "shots", None)
        parts = split_shots(int(shots), max_shots) if shots and max_shots else [shots]
        for part, part_shots in enumerate(parts):
            per = int(part_shots) if part_shots else 1  # executions of one parameter set
            if not max_executions or size * per <= max_executions or size == 1:
                ranges = [(0, size)]
            else:
                step = max(1, max_executions // per)
                ranges = [(a, min(size, a + step)) for a in range(0, size, step)]
            while len(rounds) <= part:
                rounds.append([])
            rounds[part] += [
                Piece(i, a, b, (b - a) * per, part, part_shots if len(parts) > 1 else None)
                for a, b in ranges
            ]
    return [piece for pieces in rounds for piece in pieces]


def bounds(pieces: list[Piece], max_pubs: int | None, max_executions: int | None) -> list[int]:
    """Job boundaries: consecutive pieces of one shot part, at most ``max_pubs`` and
    ``max_executions`` a job.

    Returns:
        The first piece of every job, then the number of pieces.
    """
    out = [0]
    total = 0
    for i, piece in enumerate(pieces):
        if i > out[-1] and (
            (max_pubs and i - out[-1] >= max_pubs)
            or (max_executions and total + piece.executions > max_executions)
            or piece.part != pieces[i - 1].part
        ):
            out.append(i)
            total = 0
        total += piece.executions
    out.append(len(pieces))
    return out


def piece_pub(pub: Any, piece: Piece) -> Any:
    """The PUB that runs ``piece`` of ``pub`` (the PUB itself when the piece is all of it)."""
    shape = tuple(pub.shape)
    whole = piece.start == 0 and piece.stop == _size(shape)
    if whole and piece.shots is None:
        return pub
    from qiskit.primitives.containers.estimator_pub import EstimatorPub
    from qiskit.primitives.containers.sampler_pub import SamplerPub

    if isinstance(pub, SamplerPub):
        shots = piece.shots if piece.shots is not None else pub.shots
        if whole:
            return SamplerPub(pub.circuit, pub.parameter_values, shots, validate=False)
        values = pub.parameter_values.reshape(-1)[piece.start : piece.stop]
        return SamplerPub(pub.circuit, values, shots, validate=False)
    flat = np.arange(piece.start, piece.stop)
    obs, params = pub.observables, pub.parameter_values
    obs_index = np.broadcast_to(np.arange(obs.size).reshape(obs.shape), shape).reshape(-1)[flat]
    par_index = np.broadcast_to(np.arange(params.size).reshape(params.shape), shape).reshape(-1)[
        flat
    ]
    return EstimatorPub(
        pub.circuit,
        obs.reshape(-1)[obs_index],
        params.reshape(-1)[par_index],
        pub.precision,
        validate=False,
    )
