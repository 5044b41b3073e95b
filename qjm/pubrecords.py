"""Columnar records of primitive results (Sampler V2, Estimator V2), and their decoding and joining.

A job's ``PrimitiveResult`` is decoded the moment it arrives: each PUB result becomes a
:class:`PubRecord` holding its ``DataBin`` fields as arrays (a ``BitArray`` as its packed bytes and
bit count, ``evs``/``stds`` as they are) and its metadata, so that the pieces of a PUB cut along its
sweep (or by shots) can be joined back, and a ``PubResult`` rebuilt from a record equals the one
the primitive served.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qjm._kernels import kernels
from qjm.records import fresh


@dataclass
class PubRecord:
    """One PUB result, columnar.

    Attributes:
        result_type: "SamplerPubResult" or "PubResult".
        shape: the shape of its ``DataBin``.
        bits: the ``BitArray`` fields: name to (bytes of shape ``(*shape, shots, nbytes)``,
            num_bits).
        arrays: the other array fields (``evs``, ``stds``, ...), each of shape ``(*shape, ...)``.
        other: fields that are neither (kept as they came).
        order: the field names in the ``DataBin``'s order.
        metadata: the PUB result's metadata.
    """

    result_type: str
    shape: tuple[int, ...]
    bits: dict[str, tuple[np.ndarray, int]] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    other: dict[str, Any] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_pub_result(self) -> Any:
        """The qiskit PUB result this record stands for; it shares nothing with the record."""
        from qiskit.primitives import BitArray, DataBin, PubResult, SamplerPubResult

        fields: dict[str, Any] = {}
        for name in self.order:
            if name in self.bits:
                array, num_bits = self.bits[name]
                fields[name] = BitArray(array.copy(), num_bits)
            elif name in self.arrays:
                fields[name] = self.arrays[name].copy()
            else:
                fields[name] = fresh(self.other[name])
        data = DataBin(**fields, shape=self.shape)
        cls = SamplerPubResult if self.result_type == "SamplerPubResult" else PubResult
        return cls(data, metadata=fresh(self.metadata))


@dataclass
class PrimitiveJobRecord:
    """One primitive job's result: its metadata and its PUB results in order."""

    metadata: dict[str, Any]
    pubs: list[PubRecord]

    @property
    def success(self) -> bool:
        return True  # a primitive job's result holds every PUB or the job failed

    @property
    def experiments(self) -> list[PubRecord]:
        return self.pubs


def decode_pub_result(pub_result: Any) -> PubRecord:
    """Decode one ``SamplerPubResult`` / ``PubResult``."""
    from qiskit.primitives import BitArray

    data = pub_result.data
    record = PubRecord(
        result_type=type(pub_result).__name__,
        shape=tuple(getattr(data, "shape", ()) or ()),
        metadata=fresh(dict(pub_result.metadata or {})),
    )
    for name, value in data.items():
        record.order.append(name)
        if isinstance(value, BitArray):
            record.bits[name] = (
                np.ascontiguousarray(value.array, dtype=np.uint8).copy(),
                value.num_bits,
            )
        elif isinstance(value, np.ndarray):
            record.arrays[name] = value.copy()
        else:
            record.other[name] = fresh(value)
    return record


def decode_primitive_result(result: Any) -> PrimitiveJobRecord:
    """Decode a job's ``PrimitiveResult``."""
    return PrimitiveJobRecord(
        metadata=fresh(dict(getattr(result, "metadata", None) or {})),
        pubs=[decode_pub_result(r) for r in result],
    )


def join_sweep(parts: list[PubRecord], shape: tuple[int, ...]) -> PubRecord:
    """One record of shape ``shape`` from the pieces of a PUB cut along its flattened sweep,
    in order (each piece has a 1-D shape)."""
    if len(parts) == 1 and parts[0].shape == shape:
        return parts[0]
    first = parts[0]
    out = PubRecord(
        result_type=first.result_type,
        shape=shape,
        order=list(first.order),
        metadata=fresh(first.metadata),
        other=fresh(first.other),
    )
    for name, (_, num_bits) in first.bits.items():
        flat = [p.bits[name][0].reshape((-1, *p.bits[name][0].shape[-2:])) for p in parts]
        joined = np.concatenate(flat, axis=0)
        out.bits[name] = (joined.reshape(shape + joined.shape[-2:]), num_bits)
    for name, array in first.arrays.items():
        tail = array.shape[len(first.shape) :]
        flat = [p.arrays[name].reshape((-1, *tail)) for p in parts]
        joined = np.concatenate(flat, axis=0)
        out.arrays[name] = joined.reshape(shape + tail)
    return out


def join_shots(parts: list[PubRecord]) -> PubRecord:
    """One record from the shot parts of a sampler PUB, in order: every ``BitArray`` holds the
    shots of every part (``BitArray.concatenate_shots``)."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    out = PubRecord(
        result_type=first.result_type,
        shape=first.shape,
        order=list(first.order),
        metadata=fresh(first.metadata),
        other=fresh(first.other),
        arrays={k: v.copy() for k, v in first.arrays.items()},
    )
    for name, (_, num_bits) in first.bits.items():
        arrays = [p.bits[name][0] for p in parts]
        joiner = getattr(kernels, "join_shots", None)
        joined = joiner(arrays) if joiner is not None else np.concatenate(arrays, axis=-2)
        out.bits[name] = (joined, num_bits)
    if "shots" in out.metadata:
        out.metadata["shots"] = sum(int(p.metadata.get("shots") or 0) for p in parts)
    return out
