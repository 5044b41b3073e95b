"""What travels between ``qjm serve`` and :class:`qjm.remote.RemoteBackend`, and what the store
keeps: circuits as QPY, and results in one of two formats, both safe to read from an untrusted peer (nothing is unpickled, no
class is looked up by a name the peer chose; only the fixed set of tags below is understood).

Result formats (chosen by the ``Accept`` header of ``GET /v1/jobs/{id}/result``):

``application/vnd.qjm.columnar`` (:data:`MEDIA_COLUMNAR`, what ``RemoteBackend`` asks for)
    qjm's columnar :class:`~qjm.records.JobRecord`: a small JSON header and the raw bytes of the
    count and memory arrays, so the client gets numpy arrays without parsing a single hex string::

        b"QJMC" | u16 version | u16 flags (0) | u32 header length H | H bytes of JSON header |
        zero padding to a multiple of 8 | array data (each array 8-byte aligned)

    The header is ``{"fields": ..., "experiments": [{"fields", "width", "counts", "memory",
    "data"}], "arrays": [[dtype, shape, offset, nbytes], ...]}``; an array in any of those places
    is written ``{"__array__": i}``. Outcome arrays travel in the smallest unsigned integer type
    that holds them and are widened back to the kernels' types (``uint64`` outcomes, ``int64``
    counts; packed ``uint8`` rows beyond 64 clbits) on arrival. All integers little-endian.

``application/json`` (:data:`MEDIA_JSON`, for anyone else: curl, other languages)
    qiskit's ``Result.to_dict()`` as JSON, arrays written ``{"__ndarray__": base64, "dtype",
    "shape"}``; gzip-compressed when the client sends ``Accept-Encoding: gzip``.

Other values inside results (in both formats): qiskit's ``MeasLevel`` and ``MeasReturnType``
``{"__enum__": NAME, "value": v}``, complex numbers ``{"__complex__": [re, im]}``,
tuples ``{"__tuple__": [...]}``, dicts with non-string keys ``{"__items__": [[k, v], ...]}``, and
the quantum_info objects simulators save (``Statevector``, ``DensityMatrix``, ``Operator``,
``SuperOp``, ``Clifford``, ``StabilizerState``) as ``{"__qiskit__": NAME, ...}``. Anything else is
sent as ``{"__repr__": "..."}`` and arrives as that string.
"""

from __future__ import annotations

import base64
import binascii
import enum
import io
import json
import struct
from typing import Any

import numpy as np

MEDIA_COLUMNAR = "application/vnd.qjm.columnar"
MEDIA_JSON = "application/json"
RESULT_FORMATS = (MEDIA_COLUMNAR, MEDIA_JSON)

MAGIC = b"QJMC"
VERSION = 1
_PREFIX = struct.Struct("<4sHHI")

# The only dtypes a peer may name (numpy's dtype strings, little-endian or byte-order free).
_DTYPES = {
    "|b1",
    "|u1",
    "|i1",
    "<u2",
    "<i2",
    "<u4",
    "<i4",
    "<u8",
    "<i8",
    "<f4",
    "<f8",
    "<c8",
    "<c16",
}


class WireError(ValueError):
    """Data from the other side that does not follow the format."""


# -- values ----------------------------------------------------------------------------------------


def _qiskit_classes() -> dict[str, type]:
    from qiskit.quantum_info import (
        Clifford,
        DensityMatrix,
        Operator,
        StabilizerState,
        Statevector,
        SuperOp,
    )

    return {
        "Statevector": Statevector,
        "DensityMatrix": DensityMatrix,
        "Operator": Operator,
        "SuperOp": SuperOp,
        "Clifford": Clifford,
        "StabilizerState": StabilizerState,
    }


def _aer_class(name: str) -> type | None:
    """Aer's own subclass of a quantum_info class (what AerSimulator puts in results), if Aer is
    installed here; else None and qiskit's class is used (they compare equal)."""
    try:
        from qiskit_aer.backends import compatibility
    except Exception:  # noqa: BLE001 - Aer is optional on a client
        return None
    return getattr(compatibility, name, None)


class _Encoder:
    """Turns a result value into JSON-able data; arrays go to ``self.arrays`` when collecting."""

    def __init__(self, collect_arrays: bool):
        self.collect = collect_arrays
        self.arrays: list[np.ndarray] = []
        self._classes = _qiskit_classes()

    def array(self, arr: np.ndarray) -> dict:
        arr = np.asarray(arr)
        if arr.dtype == object:
            return {"__tuple__": [self.value(x) for x in arr.tolist()], "__list__": True}
        arr = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<"), copy=False))
        if arr.dtype.str not in _DTYPES:
            arr = arr.astype(np.complex128 if np.iscomplexobj(arr) else np.float64)
        if self.collect:
            self.arrays.append(arr)
            return {"__array__": len(self.arrays) - 1}
        return {
            "__ndarray__": base64.b64encode(arr.tobytes()).decode("ascii"),
            "dtype": arr.dtype.str,
            "shape": list(arr.shape),
        }

    def value(self, obj: Any) -> Any:
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, enum.Enum):
            name = type(obj).__name__
            if name in _ENUMS and type(obj).__module__ == "qiskit.result.models":
                return {"__enum__": name, "value": self.value(obj.value)}
            return self.value(obj.value)
        if isinstance(obj, (int, float)):
            return obj
        if isinstance(obj, np.ndarray):
            return self.array(obj)
        if isinstance(obj, np.generic):
            return self.value(obj.item())
        if isinstance(obj, complex):
            return {"__complex__": [obj.real, obj.imag]}
        if isinstance(obj, dict):
            if all(isinstance(k, str) for k in obj):
                return {k: self.value(v) for k, v in obj.items()}
            return {"__items__": [[self.value(k), self.value(v)] for k, v in obj.items()]}
        if isinstance(obj, list):
            return [self.value(x) for x in obj]
        if isinstance(obj, tuple):
            return {"__tuple__": [self.value(x) for x in obj]}
        for name, cls in self._classes.items():
            if isinstance(obj, cls):
                return self.quantum_info(name, obj)
        return {"__repr__": repr(obj)}

    def quantum_info(self, name: str, obj: Any) -> dict:
        out: dict[str, Any] = {"__qiskit__": name}
        aer = type(obj).__module__.startswith("qiskit_aer")
        if aer:
            out["aer"] = True
        if name == "Clifford":
            out["tableau"] = self.array(obj.tableau)
        elif name == "StabilizerState":
            out["tableau"] = self.array(obj.clifford.tableau)
        elif name in ("Operator", "SuperOp"):
            out["data"] = self.array(obj.data)
            out["input_dims"] = list(obj.input_dims())
            out["output_dims"] = list(obj.output_dims())
        else:  # Statevector, DensityMatrix
            out["data"] = self.array(obj.data)
            out["dims"] = list(obj.dims())
        return out


class _Decoder:
    """The inverse of :class:`_Encoder`, for data from an untrusted peer."""

    def __init__(self, arrays: list[np.ndarray] | None):
        self.arrays = arrays
        self._classes: dict[str, type] | None = None

    def value(self, obj: Any) -> Any:
        if isinstance(obj, list):
            return [self.value(x) for x in obj]
        if not isinstance(obj, dict):
            return obj
        if len(obj) >= 1:
            if "__array__" in obj:
                return self.array_ref(obj["__array__"])
            if "__ndarray__" in obj:
                return self.inline_array(obj)
            if "__complex__" in obj:
                re, im = obj["__complex__"]
                return complex(float(re), float(im))
            if "__tuple__" in obj:
                items = [self.value(x) for x in obj["__tuple__"]]
                return items if obj.get("__list__") else tuple(items)
            if "__items__" in obj:
                return {_hashable(self.value(k)): self.value(v) for k, v in obj["__items__"]}
            if "__qiskit__" in obj:
                return self.quantum_info(obj)
            if "__repr__" in obj:
                return str(obj["__repr__"])
            if "__enum__" in obj:
                return _enum(obj.get("__enum__"), obj.get("value"))
        return {k: self.value(v) for k, v in obj.items()}

    def array_ref(self, index: Any) -> np.ndarray:
        if self.arrays is None or not isinstance(index, int) or not 0 <= index < len(self.arrays):
            raise WireError(f"reference to array {index!r}, which is not in the message")
        return self.arrays[index]

    def inline_array(self, obj: dict) -> np.ndarray:
        dtype, shape = _check_dtype_shape(obj.get("dtype"), obj.get("shape"))
        try:
            raw = base64.b64decode(obj["__ndarray__"], validate=True)
        except (binascii.Error, TypeError, ValueError) as exc:
            raise WireError(f"an array is not valid base64: {exc}") from exc
        if len(raw) != dtype.itemsize * _product(shape):
            raise WireError("an array's bytes do not match its dtype and shape")
        return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()

    def quantum_info(self, obj: dict) -> Any:
        if self._classes is None:
            self._classes = _qiskit_classes()
        name = obj["__qiskit__"]
        if name not in self._classes:
            raise WireError(f"unknown quantum_info type {name!r}")
        cls = (_aer_class(name) if obj.get("aer") else None) or self._classes[name]
        if name in ("Clifford", "StabilizerState"):
            from qiskit.quantum_info import Clifford

            clifford = Clifford(np.asarray(self.value(obj["tableau"]), dtype=bool))
            return clifford if name == "Clifford" else cls(clifford)
        data = self.value(obj["data"])
        if name in ("Operator", "SuperOp"):
            return cls(
                data,
                input_dims=tuple(obj.get("input_dims") or ()) or None,
                output_dims=tuple(obj.get("output_dims") or ()) or None,
            )
        return cls(data, dims=tuple(obj.get("dims") or ()) or None)


# qiskit's result enums, kept as themselves (``{"__enum__": NAME, "value": v}``); no other name is
# looked up
_ENUMS = ("MeasLevel", "MeasReturnType")


def _enum(name: Any, value: Any) -> Any:
    from qiskit.result.models import MeasLevel, MeasReturnType

    classes = {"MeasLevel": MeasLevel, "MeasReturnType": MeasReturnType}
    if name not in classes:
        raise WireError(f"unknown enum {name!r}")
    try:
        return classes[name](value)
    except ValueError as exc:
        raise WireError(f"{name} has no value {value!r}") from exc


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(x) for x in value)
    return value


def _product(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _check_dtype_shape(dtype: Any, shape: Any) -> tuple[np.dtype, tuple[int, ...]]:
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        raise WireError(f"array dtype {dtype!r} is not one qjm sends")
    if (
        not isinstance(shape, list)
        or len(shape) > 8
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)
    ):
        raise WireError(f"array shape {shape!r} is not a list of sizes")
    return np.dtype(dtype), tuple(shape)


def encode_value(obj: Any) -> Any:
    """A result value as JSON-able data, arrays inline (base64)."""
    return _Encoder(collect_arrays=False).value(obj)


def decode_value(obj: Any) -> Any:
    """The inverse of :func:`encode_value`."""
    return _Decoder(None).value(obj)


# -- columnar records --------------------------------------------------------------------------


def _narrow(arr: np.ndarray) -> np.ndarray:
    """Outcomes or counts in the smallest unsigned type that holds them."""
    if arr.dtype not in (np.uint64, np.int64) or arr.ndim != 1:
        return arr
    top = int(arr.max()) if arr.size else 0
    if arr.size and int(arr.min()) < 0:
        return arr
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return arr.astype(dtype)
    return arr.astype(np.uint64)


def _widen(arr: np.ndarray, dtype: type) -> np.ndarray:
    if arr.ndim == 1:
        return arr.astype(dtype)  # a fresh, writable array in the kernels' type
    return arr.copy()  # packed-bit rows: uint8, as the kernels keep them


def encode_columnar(record: Any) -> bytes:
    """A :class:`~qjm.records.JobRecord` in the columnar wire format."""
    enc = _Encoder(collect_arrays=True)
    experiments = []
    for exp in record.experiments:
        item: dict[str, Any] = {
            "fields": enc.value(exp.fields),
            "width": int(exp.width),
            "counts": None,
            "memory": None,
            "data": enc.value(exp.data),
        }
        if exp.counts is not None:
            keys, values = exp.counts
            item["counts"] = [enc.array(_narrow(keys)), enc.array(_narrow(values))]
        if exp.memory is not None:
            item["memory"] = enc.array(_narrow(exp.memory))
        experiments.append(item)
    return _pack({"fields": enc.value(record.fields), "experiments": experiments}, enc)


def encode_primitive(record: Any) -> bytes:
    """A :class:`~qjm.pubrecords.PrimitiveJobRecord` in the columnar format (its header says
    ``"kind": "primitive"``; BitArray bytes, ``evs``, ``stds``... as arrays)."""
    enc = _Encoder(collect_arrays=True)
    pubs = []
    for pub in record.pubs:
        pubs.append(
            {
                "result_type": str(pub.result_type),
                "shape": [int(n) for n in pub.shape],
                "bits": {str(k): [enc.array(a), int(n)] for k, (a, n) in pub.bits.items()},
                "arrays": {str(k): enc.array(a) for k, a in pub.arrays.items()},
                "other": enc.value(pub.other),
                "order": [str(k) for k in pub.order],
                "metadata": enc.value(pub.metadata),
            }
        )
    header = {"kind": "primitive", "metadata": enc.value(record.metadata), "pubs": pubs}
    return _pack(header, enc)


def encode_record(record: Any) -> bytes:
    """Any job record (circuits or primitives) in the columnar format."""
    if hasattr(record, "pubs"):
        return encode_primitive(record)
    return encode_columnar(record)


def _pack(header: dict, enc: _Encoder) -> bytes:
    table = []
    offset = 0
    for arr in enc.arrays:
        table.append([arr.dtype.str, list(arr.shape), offset, arr.nbytes])
        offset += (arr.nbytes + 7) // 8 * 8
    raw = json.dumps(dict(header, arrays=table), separators=(",", ":"), allow_nan=True).encode()
    out = bytearray(_PREFIX.pack(MAGIC, VERSION, 0, len(raw)))
    out += raw
    out += b"\0" * (-len(out) % 8)
    for arr in enc.arrays:
        out += arr.tobytes()
        out += b"\0" * (-arr.nbytes % 8)
    return bytes(out)


def _unpack(data: bytes | bytearray | memoryview) -> tuple[dict, list[np.ndarray]]:
    """The header and the arrays of a columnar message (checked against its own size)."""
    view = memoryview(data)
    if len(view) < _PREFIX.size:
        raise WireError("columnar result: shorter than its prefix")
    magic, version, _flags, hlen = _PREFIX.unpack_from(view)
    if magic != MAGIC:
        raise WireError("columnar result: wrong magic bytes (not a qjm columnar result)")
    if version != VERSION:
        raise WireError(f"columnar result: format version {version}; this qjm reads {VERSION}")
    start = _PREFIX.size
    if start + hlen > len(view):
        raise WireError("columnar result: cut short inside its header")
    try:
        header = json.loads(bytes(view[start : start + hlen]))
    except ValueError as exc:
        raise WireError(f"columnar result: the header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise WireError("columnar result: the header is not a JSON object")
    base = start + hlen
    base += -base % 8
    body = view[base:]
    arrays = []
    try:
        for dtype_name, shape, offset, nbytes in header["arrays"]:
            dtype, shape = _check_dtype_shape(dtype_name, shape)
            if (
                not isinstance(offset, int)
                or not isinstance(nbytes, int)
                or offset < 0
                or nbytes != dtype.itemsize * _product(shape)
                or offset + nbytes > len(body)
            ):
                raise WireError("columnar result: an array lies outside the message")
            count = nbytes // dtype.itemsize
            arrays.append(
                np.frombuffer(body, dtype=dtype, count=count, offset=offset).reshape(shape)
            )
    except WireError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a malformed table makes fail
        raise WireError(
            f"columnar result: malformed array table ({type(exc).__name__}: {exc})"
        ) from exc
    return header, arrays


def decode_record(data: bytes | bytearray | memoryview) -> Any:
    """Any job record from :func:`encode_record`.

    Raises:
        WireError: ``data`` is not in the columnar format.
    """
    header, arrays = _unpack(data)
    if header.get("kind") == "primitive":
        return _primitive_from(header, arrays)
    return _columnar_from(header, arrays)


def _primitive_from(header: dict, arrays: list[np.ndarray]) -> Any:
    from qjm.pubrecords import PrimitiveJobRecord, PubRecord

    try:
        dec = _Decoder(arrays)
        pubs = []
        for item in header["pubs"]:
            bits = {}
            for name, (ref, num_bits) in item["bits"].items():
                array = np.array(dec.value(ref), dtype=np.uint8)
                if not isinstance(num_bits, int) or num_bits < 0 or array.ndim < 2:
                    raise WireError("columnar result: a BitArray field is malformed")
                bits[str(name)] = (array, num_bits)
            pubs.append(
                PubRecord(
                    result_type=str(item["result_type"]),
                    shape=tuple(int(n) for n in item["shape"]),
                    bits=bits,
                    arrays={str(k): np.array(dec.value(v)) for k, v in item["arrays"].items()},
                    other=dec.value(item["other"]),
                    order=[str(k) for k in item["order"]],
                    metadata=dec.value(item["metadata"]),
                )
            )
        return PrimitiveJobRecord(metadata=dec.value(header["metadata"]), pubs=pubs)
    except WireError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a malformed header makes fail
        raise WireError(f"columnar result: malformed header ({type(exc).__name__}: {exc})") from exc


def decode_columnar(data: bytes | bytearray | memoryview) -> Any:
    """A :class:`~qjm.records.JobRecord` from the columnar wire format.

    Raises:
        WireError: ``data`` is not in that format (or is cut short).
    """
    header, arrays = _unpack(data)
    if header.get("kind") == "primitive":
        raise WireError("columnar result: a primitive job's record, not a circuits job's")
    return _columnar_from(header, arrays)


def _columnar_from(header: dict, arrays: list[np.ndarray]) -> Any:
    from qjm.records import ExperimentRecord, JobRecord

    try:
        dec = _Decoder(arrays)
        experiments = []
        for item in header["experiments"]:
            exp = ExperimentRecord(
                fields=dec.value(item["fields"]),
                width=int(item["width"]),
                data=dec.value(item["data"]),
            )
            if item["counts"] is not None:
                keys, values = (dec.value(x) for x in item["counts"])
                exp.counts = (_widen(keys, np.uint64), values.astype(np.int64))
            if item["memory"] is not None:
                exp.memory = _widen(dec.value(item["memory"]), np.uint64)
            experiments.append(exp)
        return JobRecord(fields=dec.value(header["fields"]), experiments=experiments)
    except WireError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a malformed header makes fail
        raise WireError(f"columnar result: malformed header ({type(exc).__name__}: {exc})") from exc


# -- qiskit Result JSON ------------------------------------------------------------------------


def encode_result_json(result: Any) -> bytes:
    """qiskit's ``Result.to_dict()`` as JSON bytes (arrays and complex numbers tagged)."""
    return json.dumps(encode_value(result.to_dict()), separators=(",", ":")).encode()


def decode_result_json(data: bytes | str) -> Any:
    """The ``qiskit.result.Result`` of :func:`encode_result_json`."""
    from qiskit.result import Result

    try:
        return Result.from_dict(decode_value(json.loads(data)))
    except WireError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever malformed data makes fail
        raise WireError(f"result JSON: not a qiskit Result ({type(exc).__name__}: {exc})") from exc


# -- circuits ------------------------------------------------------------------------------------


def dump_circuits(circuits: list, version: int | None = None) -> bytes:
    """The circuits as one QPY file."""
    from qiskit import qpy

    buf = io.BytesIO()
    if version is None:
        qpy.dump(circuits, buf)
    else:
        qpy.dump(circuits, buf, version=version)
    return buf.getvalue()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def b64_length(n: int) -> int:
    """Characters of the base64 text of ``n`` bytes."""
    return 4 * ((n + 2) // 3)


def load_circuits(text: str) -> list:
    """Circuits from the base64 text of a QPY file (see :func:`decode_circuits`)."""
    return decode_circuits(text)[0]


def decode_circuits(text: str, check: Any = None) -> tuple[list, bytes]:
    """Circuits from the base64 text of a QPY file, and the QPY bytes.

    ``check(raw)``, when given, is called with the QPY bytes after the magic and version checks
    and before ``qpy.load`` (``qjm serve`` walks the headers there); what it raises propagates.

    Raises:
        WireError: not base64, or not a QPY file of circuits this qiskit reads.
    """
    from qiskit import qpy
    from qiskit.circuit import QuantumCircuit

    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WireError(f"'circuits' is not valid base64: {exc}") from exc
    if not raw:
        raise WireError("'circuits' is empty: it must be the base64 text of a QPY file")
    if not raw.startswith(b"QISKIT"):
        raise WireError("'circuits' is not a QPY file (it does not start with b'QISKIT')")
    if len(raw) > 6 and raw[6] > qpy.QPY_VERSION:
        raise WireError(
            f"'circuits' is QPY version {raw[6]}; this service reads QPY up to version "
            f"{qpy.QPY_VERSION} (dump with qpy.dump(..., version={qpy.QPY_VERSION}))"
        )
    if check is not None:
        check(raw)
    try:
        circuits = qpy.load(io.BytesIO(raw))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - qpy raises many kinds, and Rust panics too
        raise WireError(
            f"'circuits' is not a QPY file qiskit can read: {type(exc).__name__}: {exc}"
        ) from exc
    if not circuits:
        raise WireError("'circuits' holds no circuits")
    for i, circuit in enumerate(circuits):
        if not isinstance(circuit, QuantumCircuit):
            raise WireError(f"'circuits' item {i} is a {type(circuit).__name__}, not a circuit")
    return circuits, raw
