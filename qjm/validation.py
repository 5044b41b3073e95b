"""Checks of a whole batch before anything is submitted."""

from __future__ import annotations

import collections
import math
import numbers
from collections.abc import Iterable
from typing import Any

from qiskit.circuit import QuantumCircuit


def check_circuits(circuits: Any) -> list[QuantumCircuit]:
    """The circuits as a list, or a clear error.

    Raises:
        ValueError: there are no circuits.
        TypeError: ``circuits`` is not a circuit or an iterable of circuits, or one item is not one.
    """
    if isinstance(circuits, QuantumCircuit):
        return [circuits]
    if isinstance(circuits, (str, bytes)) or not isinstance(circuits, Iterable):
        raise TypeError(
            f"circuits must be a QuantumCircuit or a list of them, not {type(circuits).__name__}"
        )
    out = list(circuits)
    if not out:
        raise ValueError("no circuits to run: pass at least one QuantumCircuit")
    for i, circuit in enumerate(out):
        if not isinstance(circuit, QuantumCircuit):
            raise TypeError(
                f"circuits[{i}] is a {type(circuit).__name__}, not a QuantumCircuit; "
                "qjm runs QuantumCircuit objects (build or load them with qiskit first)"
            )
    return out


def check_positive_int(name: str, value: Any, *, allow_none: bool = True) -> int | None:
    """``value`` as an int >= 1 (or None when allowed), or a clear error.

    Raises:
        TypeError: not an integer (a bool or a float is not one).
        ValueError: less than 1.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= 1, not {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return int(value)


def check_timeout(timeout: Any) -> float | None:
    """A timeout in seconds: None (no limit) or a finite or infinite number >= 0.

    Raises:
        TypeError: not a number.
        ValueError: negative or NaN.
    """
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise TypeError(f"timeout must be a number of seconds or None, not {timeout!r}")
    timeout = float(timeout)
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(f"timeout must be >= 0 seconds (or None to wait for ever), got {timeout}")
    return timeout


def check_tags(tags: Any) -> list[str]:
    """Tags as a list of strings.

    Raises:
        TypeError: not a list of strings.
    """
    if tags is None:
        return []
    if isinstance(tags, str) or not isinstance(tags, Iterable):
        raise TypeError(f"tags must be a list of strings, not {tags!r}")
    tags = list(tags)
    for tag in tags:
        if not isinstance(tag, str):
            raise TypeError(f"every tag must be a string, got {tag!r}")
    return tags


def warm_up(circuits: Iterable[Any], only_shared: bool = False) -> None:
    """Build, in this thread, the lookup tables qiskit builds lazily on a circuit's first
    ``find_bit`` (its qubit and clbit indices).

    qiskit 2.x builds them in Rust behind a one-time lock that calls back into Python: two
    threads touching the same circuit for the first time (the same circuit in several jobs, or
    in several shot parts, submitted at once) can deadlock on that lock and the GIL. qjm submits
    jobs from a pool, so it makes them before the circuits are shared. With ``only_shared``,
    only circuits given more than once (the others go to one job each): the tables cost about
    a dozen lists per circuit, held as long as the circuit, which Python's garbage collector
    then walks again and again.
    """
    circuits = list(circuits)
    if only_shared:
        counts = collections.Counter(map(id, circuits))
        circuits = [c for c in circuits if counts[id(c)] > 1]
    seen: set[int] = set()
    for circuit in circuits:
        if id(circuit) in seen or not isinstance(circuit, QuantumCircuit):
            continue
        seen.add(id(circuit))
        if circuit.num_qubits:
            circuit.find_bit(circuit.qubits[0])
        if circuit.num_clbits:
            circuit.find_bit(circuit.clbits[0])
