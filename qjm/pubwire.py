"""PUBs as bytes, for the journal: what a primitive job runs, kept in the store so that a set
retrieved in another process can be resumed. Nothing is pickled.

Layout: ``QJMPUBS1``, a 4-byte length and a JSON header (per PUB: its kind, circuit, shots or
precision, shape, parameter names, observables as qiskit's ``ObservablesArray.tolist()``), an
8-byte length and the circuits as one QPY file (each distinct circuit once), then each parameter
value array as an 8-byte length and an ``.npy`` file (read with ``allow_pickle=False``). Every
length is checked against the bytes that are there before anything is parsed.
"""

from __future__ import annotations

import io
import json
import struct
from typing import Any

import numpy as np

__all__ = ["encode_pubs", "decode_pubs", "PubWireError"]

MAGIC = b"QJMPUBS1"


class PubWireError(ValueError):
    """The bytes are not PUBs this module wrote (truncated, damaged, or something else)."""


def encode_pubs(pubs: list) -> bytes:
    """``SamplerPub`` / ``EstimatorPub`` objects as bytes (:func:`decode_pubs` reads them)."""
    from qiskit import qpy
    from qiskit.primitives.containers.estimator_pub import EstimatorPub

    circuits: list = []
    seen: dict[int, int] = {}
    arrays: list[np.ndarray] = []
    entries = []
    for pub in pubs:
        key = id(pub.circuit)
        if key not in seen:
            seen[key] = len(circuits)
            circuits.append(pub.circuit)
        values = pub.parameter_values
        params = []
        for names, array in values.data.items():
            params.append({"names": [str(n) for n in names], "array": len(arrays)})
            arrays.append(np.ascontiguousarray(array))
        entry: dict[str, Any] = {
            "circuit": seen[key],
            "binding_shape": list(values.shape),
            "params": params,
        }
        if isinstance(pub, EstimatorPub):
            entry.update(
                kind="estimator",
                observables=pub.observables.tolist(),
                observables_shape=list(pub.observables.shape),
                precision=pub.precision,
            )
        else:
            entry.update(kind="sampler", shots=pub.shots)
        entries.append(entry)
    header = json.dumps({"pubs": entries, "arrays": len(arrays)}).encode()
    qpy_buffer = io.BytesIO()
    qpy.dump(circuits, qpy_buffer)
    out = [MAGIC, struct.pack("<I", len(header)), header]
    for blob in [qpy_buffer.getvalue()] + [_npy(a) for a in arrays]:
        out += [struct.pack("<Q", len(blob)), blob]
    return b"".join(out)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def decode_pubs(blob: bytes) -> list:
    """The PUBs :func:`encode_pubs` wrote.

    Raises:
        PubWireError: the bytes are not such PUBs.
    """
    from qiskit import qpy
    from qiskit.primitives.containers.bindings_array import BindingsArray
    from qiskit.primitives.containers.estimator_pub import EstimatorPub
    from qiskit.primitives.containers.observables_array import ObservablesArray
    from qiskit.primitives.containers.sampler_pub import SamplerPub

    view = memoryview(blob)
    if bytes(view[: len(MAGIC)]) != MAGIC:
        raise PubWireError("not qjm's PUB format (bad magic)")
    pos = len(MAGIC)
    (size,) = _unpack("<I", view, pos)
    pos += 4
    header = _take(view, pos, size)
    pos += size
    try:
        meta = json.loads(bytes(header))
        entries, n_arrays = meta["pubs"], int(meta["arrays"])
    except (ValueError, KeyError, TypeError) as exc:
        raise PubWireError(f"unreadable header: {exc}") from exc
    parts = []
    for _ in range(1 + n_arrays):
        (size,) = _unpack("<Q", view, pos)
        pos += 8
        parts.append(_take(view, pos, size))
        pos += size
    try:
        circuits = list(qpy.load(io.BytesIO(bytes(parts[0]))))
        arrays = [np.load(io.BytesIO(bytes(p)), allow_pickle=False) for p in parts[1:]]
        pubs = []
        for entry in entries:
            circuit = circuits[entry["circuit"]]
            data = {tuple(p["names"]): arrays[p["array"]] for p in entry["params"]}
            values = BindingsArray(data or None, shape=tuple(entry["binding_shape"]))
            if entry["kind"] == "estimator":
                observables = ObservablesArray(entry["observables"]).reshape(
                    tuple(entry["observables_shape"])
                )
                pubs.append(EstimatorPub(circuit, observables, values, entry["precision"]))
            else:
                pubs.append(SamplerPub(circuit, values, entry["shots"]))
    except PubWireError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to rebuild is damaged bytes
        raise PubWireError(f"the PUBs do not read back: {type(exc).__name__}: {exc}") from exc
    return pubs


def _unpack(fmt: str, view: memoryview, pos: int) -> tuple:
    size = struct.calcsize(fmt)
    if pos + size > len(view):
        raise PubWireError("truncated")
    return struct.unpack_from(fmt, view, pos)


def _take(view: memoryview, pos: int, size: int) -> memoryview:
    if size < 0 or pos + size > len(view):
        raise PubWireError("truncated: a part is longer than the bytes that are there")
    return view[pos : pos + size]
