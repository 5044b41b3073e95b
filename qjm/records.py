"""Columnar records of fetched results, and the decoding of a qiskit ``Result`` into them.

A job's result is decoded the moment it arrives, in the thread that fetched it: each experiment's
count histogram becomes a pair of arrays (outcome keys, counts) and its memory an array of outcomes,
both in the kernels' representation (``uint64`` for up to 64 clbits, big-endian packed-bit rows
beyond). Everything else the backend sent (headers, metadata, statevectors, ...) is kept as it came,
so a ``Result`` rebuilt from a record equals the one the backend served.
"""

from __future__ import annotations

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
        counts: (keys, counts) arrays, or None when the backend sent no counts.
        memory: per-shot outcomes (measurement level 2 only), or None.
        data: the other entries of the experiment's data (statevector, unitary, level 0/1 memory...).
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
        """The qiskit ``ExperimentResult`` this record stands for (counts and memory as hex)."""
        data = {}
        if self.counts is not None:
            keys, values = self.counts
            data["counts"] = dict(zip(outcomes_to_hex(keys), values.tolist()))
        if self.memory is not None:
            data["memory"] = outcomes_to_hex(self.memory)
        data.update(self.data)
        fields = dict(self.fields)
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
            results=[e.to_experiment_result() for e in self.experiments], **dict(self.fields)
        )


def outcomes_to_hex(outcomes: np.ndarray) -> list[str]:
    """Outcomes in the kernels' representation to qiskit's hex strings ("0x1f")."""
    if outcomes.ndim == 1:
        return [hex(x) for x in outcomes.tolist()]
    return [hex(int.from_bytes(row.tobytes(), "big")) for row in outcomes]


def _infer_width(strings: list[str], is_hex: bool) -> int:
    longest = max((len(s) for s in strings), default=0)
    if is_hex:
        return max(0, (longest - 2) * 4) if strings and strings[0].startswith("0x") else longest * 4
    return longest


def _parse(strings: list[str], width: int) -> tuple[np.ndarray, int]:
    """Parse outcome strings, hex ("0x..") or binary, into the kernels' representation."""
    is_hex = bool(strings) and strings[0].startswith("0x")
    parse = kernels.parse_hex if is_hex else kernels.parse_bits
    try:
        return parse(strings, width), width
    except ValueError:
        # A value wider than memory_slots says: take the width from the data instead.
        wider = max(width, _infer_width(strings, is_hex))
        if wider == width:
            raise
        return parse(strings, wider), wider


def decode_experiment(exp: ExperimentResult) -> ExperimentRecord:
    """Decode one ``ExperimentResult`` into an :class:`ExperimentRecord`."""
    fields = exp.to_dict()
    data = dict(fields.pop("data"))
    record = ExperimentRecord(fields=fields, data=data)
    header = record.header
    width = int(header.get("memory_slots") or 0)
    counts = data.get("counts")
    memory = data.get("memory") if record.meas_level == MeasLevel.CLASSIFIED else None
    try:
        if counts is not None:
            keys = list(counts)  # str keys (the kernels refuse anything else)
            arr, width = _parse(keys, width)
            values = np.fromiter(counts.values(), dtype=np.int64, count=len(keys))
            record.counts = (arr, values)
        if memory is not None:
            mem, mwidth = _parse(list(memory), width)
            if mwidth != width and record.counts is not None:
                # keep one width for the experiment
                width = mwidth
                record.counts = (_parse(keys, width)[0], record.counts[1])
            record.memory = mem
    except (ValueError, TypeError):
        # Not outcome strings qjm can read (e.g. dit strings): keep them as the backend sent them.
        record.counts = None
        record.memory = None
        return record
    record.width = width
    if record.counts is not None:
        del data["counts"]
    if record.memory is not None:
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
