"""Columnar records of fetched results, and the decoding of a qiskit ``Result`` into them.

A job's result is decoded the moment it arrives, in the thread that fetched it: each experiment's
count histogram becomes a pair of arrays (outcome keys, counts) and its memory an array of outcomes,
both in the kernels' representation (``uint64`` for up to 64 clbits, big-endian packed-bit rows
beyond). Everything else the backend sent (headers, metadata, statevectors, ...) is kept as it came,
so a ``Result`` rebuilt from a record equals the one the backend served.
"""

from __future__ import annotations

import copy
import numbers
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from qiskit.result import Result
from qiskit.result.models import ExperimentResult, ExperimentResultData, MeasLevel

from qjm._kernels import kernels


@dataclass
class ExperimentRecord:
    """One experiment's result, columnar.

    Attributes:
        fields: the ``ExperimentResult`` attributes other than ``data`` (shots, success, header,
            meas_level, status, seed_simulator, metadata, ...), as the backend gave them.
        width: clbits of the outcomes in ``counts`` and ``memory``.
        counts: (keys, counts) arrays, or None when the backend sent no counts (or counts that
            are not outcomes with integer counts: those stay in ``data``).
        memory: per-shot outcomes (measurement level 2 only), or None.
        data: the other entries of the experiment's data (statevector, unitary, level 0/1
            memory...), and the counts and memory as the backend sent them whenever the arrays
            cannot spell them back exactly (keys not spelled as ``hex()`` spells them).
    """

    fields: dict[str, Any]
    width: int = 0
    counts: tuple[np.ndarray, np.ndarray] | None = None
    memory: np.ndarray | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return bool(self.fields.get("success", False))

    @property
    def header(self) -> dict:
        return self.fields.get("header") or {}

    @property
    def name(self) -> str | None:
        return self.header.get("name")

    @property
    def meas_level(self) -> int:
        return int(self.fields.get("meas_level", MeasLevel.CLASSIFIED))

    def to_experiment_result(self) -> ExperimentResult:
        """The qiskit ``ExperimentResult`` this record stands for, exactly as the backend sent
        it (counts and memory as hex when that is how it spelled them). It shares nothing
        mutable with the record."""
        data = {}
        if self.counts is not None and "counts" not in self.data:
            keys, values = self.counts
            data["counts"] = dict(zip(outcomes_to_hex(keys), values.tolist()))
        if self.memory is not None and "memory" not in self.data:
            data["memory"] = outcomes_to_hex(self.memory)
        data.update(fresh(self.data))
        fields = fresh(self.fields)
        return ExperimentResult(
            fields.pop("shots", None),
            fields.pop("success", False),
            ExperimentResultData(**data),
            **fields,
        )


@dataclass
class JobRecord:
    """One job's result: the ``Result`` attributes other than ``results``, and its experiments."""

    fields: dict[str, Any]
    experiments: list[ExperimentRecord]

    @property
    def success(self) -> bool:
        return bool(self.fields.get("success", False))

    def to_result(self) -> Result:
        return Result(
            results=[e.to_experiment_result() for e in self.experiments], **fresh(self.fields)
        )

    def peek(self, k: int) -> ExperimentRecord:
        """Experiment ``k``, to be read once: a record that decodes as it is read does not keep
        it (see :meth:`PooledRecord.peek`)."""
        return self.experiments[k]


_DECODING = threading.Lock()  # an experiment of a PooledRecord is decoded once


class PooledRecord(JobRecord):
    """A circuits job's record kept as its bytes in the store's pooled layout (:mod:`qjm.wire`,
    :func:`~qjm.wire.encode_record`) and read as it is used: nothing is decoded to hold it, to
    store it or to count its successes; an experiment is decoded (and kept) when first read.

    A job set holds its results this way once they are kept, so a large set holds a few
    ``bytes`` objects rather than millions of Python objects (which Python's garbage collector
    would walk again and again), and each result once.

    Args:
        blob: the bytes (:func:`qjm.wire.encode_record` of a circuits record).
        successes: whether each experiment succeeded, when known (else read from the header).
        success: whether the job succeeded, when known.
    """

    def __init__(
        self,
        blob: bytes,
        successes: np.ndarray | None = None,
        success: bool | None = None,
    ):
        self.blob = blob
        self._successes = successes
        self._success = success
        self._reader: Any = None
        self._fields: dict | None = None
        self._experiments: list[ExperimentRecord | None] | None = None
        self._view: _Experiments | None = None

    @classmethod
    def of(cls, record: JobRecord, blob: bytes) -> PooledRecord:
        """The pooled form of ``record``, whose bytes are ``blob``."""
        return cls(
            blob,
            np.fromiter((e.success for e in record.experiments), dtype=bool),
            record.success,
        )

    def _read(self) -> Any:
        reader = self._reader
        if reader is None:
            from qjm.wire import PooledReader

            reader = self._reader = PooledReader(self.blob)
        return reader

    @property  # type: ignore[override]
    def fields(self) -> dict[str, Any]:
        fields = self._fields
        if fields is None:
            fields = self._fields = self._read().fields()
        return fields

    @property  # type: ignore[override]
    def experiments(self) -> Sequence[ExperimentRecord]:
        view = self._view
        if view is None:
            view = self._view = _Experiments(self)
        return view

    @property
    def success(self) -> bool:
        if self._success is None:
            self._success = bool(self.fields.get("success", False))
        return self._success

    def successes(self) -> np.ndarray:
        """Whether each experiment succeeded, without decoding any."""
        if self._successes is None:
            self._successes = np.array(self._read().successes(), dtype=bool)
        return self._successes

    def experiment(self, k: int) -> ExperimentRecord:
        decoded = self._experiments
        if decoded is None:
            with _DECODING:
                decoded = self._experiments
                if decoded is None:
                    decoded = self._experiments = [None] * len(self._read())
        exp = decoded[k]
        if exp is None:
            with _DECODING:  # decoded once and kept: its part of the header is let go
                exp = decoded[k]
                if exp is None:
                    exp = decoded[k] = self._read().experiment(k, keep=False)
        return exp

    def peek(self, k: int) -> ExperimentRecord:
        """Experiment ``k`` decoded for one read and not kept (unless it was kept already): a
        histogram read once costs no objects held afterwards, which the garbage collector would
        walk again and again."""
        decoded = self._experiments
        if decoded is not None:
            exp = decoded[k]
            if exp is not None:
                return exp
        if not 0 <= k < len(self):
            raise IndexError("experiment index out of range")
        return self._read().experiment(k, keep=True)

    def counts_and_header(self, k: int) -> tuple[np.ndarray, np.ndarray, dict] | None:
        """Experiment ``k``'s outcomes, counts and header when they can be read without the rest
        of it (see ``PooledReader.counts_and_header``), else None."""
        decoded = self._experiments
        if decoded is not None and decoded[k] is not None:
            return None
        return self._read().counts_and_header(k)

    def __len__(self) -> int:
        if self._successes is not None:
            return len(self._successes)
        return len(self._read())

    def __repr__(self) -> str:
        return f"PooledRecord({len(self.blob)} bytes, {len(self)} experiments)"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PooledRecord):
            return self.blob == other.blob
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


class _Experiments(Sequence):
    """The experiments of a :class:`PooledRecord`, each decoded when first read."""

    def __init__(self, record: PooledRecord):
        self._record = record

    def __len__(self) -> int:
        return len(self._record)

    def __getitem__(self, k: Any) -> Any:
        if isinstance(k, slice):
            return [self._record.experiment(i) for i in range(*k.indices(len(self)))]
        n = len(self)
        if k < 0:
            k += n
        if not 0 <= k < n:
            raise IndexError("experiment index out of range")
        return self._record.experiment(k)

    def __iter__(self) -> Any:
        for k in range(len(self)):
            yield self._record.experiment(k)


def outcomes_to_hex(outcomes: np.ndarray) -> list[str]:
    """Outcomes in the kernels' representation to qiskit's hex strings ("0x1f")."""
    if outcomes.ndim == 1:
        return [hex(x) for x in outcomes.tolist()]
    return [hex(int.from_bytes(row.tobytes(), "big")) for row in outcomes]


def fresh(obj: Any) -> Any:
    """A copy of ``obj`` that shares nothing mutable with it (dicts, lists, arrays, quantum_info
    objects are copied; numbers and strings are immutable and kept)."""
    if obj is None or isinstance(obj, (str, bytes, int, float, complex, bool)):
        return obj
    if isinstance(obj, dict):
        return {k: fresh(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [fresh(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(fresh(v) for v in obj)
    if isinstance(obj, np.ndarray):
        return obj.copy()
    if isinstance(obj, np.generic):
        return obj
    return copy.deepcopy(obj)


class _NotOutcomes(Exception):
    """The keys or memory are not outcomes the kernels read (dit strings, mixed types...)."""


def _bit_length(outcomes: np.ndarray) -> int:
    """Bits of the widest outcome (0 when there are none or all are zero)."""
    if outcomes.size == 0:
        return 0
    if outcomes.ndim == 1:
        return int(outcomes.max()).bit_length()
    nonzero = np.flatnonzero(outcomes.any(axis=0))
    if nonzero.size == 0:
        return 0
    col = int(nonzero[0])
    top = int(outcomes[:, col].max()).bit_length()
    return 8 * (outcomes.shape[1] - 1 - col) + top


def _digits(strings: list[str]) -> int:
    """The most binary digits in one of ``strings`` (spaces, underscores and "0b" left out)."""
    most = 0
    for s in strings:
        body = s[2:] if s[:2] in ("0b", "0B") else s
        most = max(most, len(body) - body.count(" ") - body.count("_"))
    return most


class _Outcomes:
    """One list of outcomes (count keys or level-2 memory) as the backend spelled them."""

    def __init__(self, items: list):
        self.items = items
        self.kind = _kind(items)
        self.exact = False  # hex() of the parsed outcomes gives the items back
        self.array: np.ndarray | None = None
        self.width = 0  # the representation's width of ``array``
        self.needed = 0  # bits the outcomes need

    def parse(self, width: int) -> None:
        """Parse at ``width`` bits or wider when the outcomes need it; sets ``needed``."""
        items = self.items
        if self.kind == "int":
            needed = max((v.bit_length() for v in items), default=0)
            self.width = max(width, needed)
            self.array = _ints_to_outcomes(items, self.width)
            self.needed = needed
            return
        try:
            self._parse_at(width)
            if width:
                return  # they fit in memory_slots: that is the width
        except ValueError:
            # a value wider than memory_slots says: take the width from the data instead
            wider = max(width, _infer_width(items, self.kind == "hex"))
            if wider == width:
                raise
            self._parse_at(wider)
        self.needed = _bit_length(self.array)
        if self.kind == "bits" and not width:
            self.needed = max(self.needed, _digits(items))

    def _parse_at(self, width: int) -> None:
        if self.kind == "hex":
            self.array, self.exact = kernels.parse_hex_canonical(self.items, width)
        else:
            self.array = kernels.parse_bits(self.items, width)
        self.width = width

    def exactly(self, width: int) -> np.ndarray:
        """Parsed at exactly ``width`` bits (ValueError when an outcome is wider)."""
        if self.kind == "int":
            if any(v.bit_length() > width for v in self.items):
                raise ValueError(f"an outcome does not fit in {width} bits")
            self.array, self.width = _ints_to_outcomes(self.items, width), width
        else:
            self._parse_at(width)
        return self.array

    def at(self, width: int) -> np.ndarray:
        """The outcomes in the representation of ``width`` bits (parsed again if need be)."""
        if width != self.width and (width > 64 or self.width > 64):
            exact = self.exact
            self.parse(width)
            self.exact = exact
        return self.array


def outcomes_at(items: list, width: int) -> np.ndarray:
    """Outcomes (hex, binary or integer keys, as qiskit's ``Counts`` reads them) in the kernels'
    representation of ``width`` bits.

    Raises:
        ValueError: not outcomes, or one wider than ``width``.
    """
    try:
        outcomes = _Outcomes(list(items))
    except _NotOutcomes as exc:
        raise ValueError(str(exc)) from exc
    return outcomes.exactly(width)


def _kind(items: list) -> str:
    """How outcomes are spelled, as qiskit's ``Counts`` tells them apart by the first one."""
    if not items:
        return "hex"
    first = items[0]
    if type(first) is str and all(type(k) is str for k in items):
        return "hex" if first.startswith("0x") else "bits"
    if isinstance(first, str):
        if not all(isinstance(k, str) for k in items):
            raise _NotOutcomes("mixed key types")
        return "hex" if first.startswith("0x") else "bits"
    if all(isinstance(k, numbers.Integral) and not isinstance(k, bool) and k >= 0 for k in items):
        items[:] = [int(k) for k in items]
        return "int"
    raise _NotOutcomes(f"outcomes of type {type(first).__name__}")


def _ints_to_outcomes(ints: list[int], width: int) -> np.ndarray:
    if width <= 64:
        return np.array(ints, dtype=np.uint64).reshape(len(ints))
    nb = (width + 7) // 8
    raw = b"".join(v.to_bytes(nb, "big") for v in ints)
    return np.frombuffer(raw, dtype=np.uint8).reshape(len(ints), nb).copy()


def _infer_width(strings: list[str], is_hex: bool) -> int:
    longest = max((len(s) for s in strings), default=0)
    if is_hex:
        return max(0, (longest - 2) * 4) if strings and strings[0].startswith("0x") else longest * 4
    return longest


def _count_values(values: list) -> np.ndarray | None:
    """Counts as int64, or None when they are not all non-negative integers (kept as sent)."""
    if not values:
        return np.zeros(0, dtype=np.int64)
    if all(type(v) is int for v in values):  # what backends send: plain ints, checked fast
        if min(values) < 0:
            return None
        try:
            return np.array(values, dtype=np.int64)
        except OverflowError:
            return None
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
        return None
    try:
        arr = np.array([int(v) for v in values], dtype=np.int64)
    except OverflowError:
        return None
    return arr if arr.min() >= 0 else None


_OPTIONAL = ("header", "status", "seed", "meas_return")


def _experiment_dict(exp: ExperimentResult) -> dict[str, Any]:
    """``exp.to_dict()``, the same dict in the same order, read from the object's attributes
    (qiskit's asks ``hasattr`` four times, each a failed look-up through ``__getattr__``)."""
    if type(exp) is not ExperimentResult or type(exp.data) is not ExperimentResultData:
        return exp.to_dict()
    attrs = exp.__dict__
    metadata = attrs["_metadata"]
    data = exp.data.__dict__
    out = {
        "shots": attrs["shots"],
        "success": attrs["success"],
        "data": {name: data[name] for name in data["_data_attributes"]},
        "meas_level": attrs["meas_level"],
    }
    for name in _OPTIONAL:
        if name in attrs:
            out[name] = attrs[name]
        elif name in metadata:
            out[name] = metadata[name]
    out.update(metadata)
    return out


def decode_experiment(exp: ExperimentResult) -> ExperimentRecord:
    """Decode one ``ExperimentResult`` into an :class:`ExperimentRecord`.

    Count keys and memory become outcome arrays when they are outcomes the kernels read (hex,
    binary or integer keys). Whatever the arrays cannot give back exactly as the backend sent it
    (keys spelled otherwise than ``hex()`` spells them, counts that are not integers, dit
    strings) is also kept as sent, so that ``data()`` and ``get_counts()`` read exactly as
    qiskit's would. Never raises for data qiskit's ``Result`` accepts.
    """
    fields = _experiment_dict(exp)
    data = dict(fields.pop("data"))
    record = ExperimentRecord(fields=fields, data=data)
    slots = record.header.get("memory_slots") if isinstance(record.header, dict) else None
    if type(slots) is not int:  # what backends send: a plain int, checked without the ABC
        slots = int(slots) if isinstance(slots, numbers.Integral) else 0
    slots = slots if slots > 0 else 0
    counts = data.get("counts")
    memory = data.get("memory") if record.meas_level == MeasLevel.CLASSIFIED else None
    try:
        keys = values = mem = None
        if isinstance(counts, dict):
            values = _count_values(list(counts.values()))
            keys = _Outcomes(list(counts))
            keys.parse(slots)
        if isinstance(memory, list):
            mem = _Outcomes(list(memory))
            mem.parse(slots)
    except (_NotOutcomes, ValueError, TypeError, OverflowError):
        return record  # not outcomes qjm can read (e.g. dit strings): kept as the backend sent them
    parsed = [o for o in (keys, mem) if o is not None]
    if not parsed:
        return record
    needed = max(o.needed for o in parsed)
    width = max(slots, needed) if slots else max(1, needed)
    record.width = width
    if keys is not None and values is not None:
        record.counts = (keys.at(width), values)
        if keys.exact:
            del data["counts"]
    if mem is not None:
        record.memory = mem.at(width)
        if mem.exact:
            del data["memory"]
    return record


_RESULT_FIELDS = (
    "backend_name",
    "backend_version",
    "date",
    "header",
    "job_id",
    "status",
    "success",
)


def decode_result(result: Result) -> JobRecord:
    """Decode a job's ``Result`` into a :class:`JobRecord`."""
    fields = {name: getattr(result, name) for name in _RESULT_FIELDS}
    fields.update(vars(result).get("_metadata", {}))
    return JobRecord(fields=fields, experiments=[decode_experiment(e) for e in result.results])
