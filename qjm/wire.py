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
from collections.abc import Callable
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


class _Malformed:
    """``with _Malformed("what {}", arg):`` any exception but a WireError raised inside (whatever
    malformed data makes fail) becomes a WireError saying ``what`` and the error, chained from
    it. A class, not a generator: it is entered once per experiment read."""

    __slots__ = ("what", "args")

    def __init__(self, what: str, *args: Any):
        self.what = what
        self.args = args

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or isinstance(exc, WireError) or not isinstance(exc, Exception):
            return False
        what = self.what.format(*self.args) if self.args else self.what
        raise WireError(f"{what} ({type(exc).__name__}: {exc})") from exc


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
        self._classes: dict[str, type] | None = None  # quantum_info classes, looked up on need

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
        # the plain JSON types first, by exact type (most of a result is made of them)
        t = type(obj)
        if t is str or t is int or t is float or t is bool or obj is None:
            return obj
        if t is dict:
            for k in obj:
                if type(k) is not str:
                    break
            else:
                return {k: self.value(v) for k, v in obj.items()}
        elif t is list:
            return [self.value(x) for x in obj]
        return self._other(obj)

    def _other(self, obj: Any) -> Any:
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
        if self._classes is None:
            self._classes = _qiskit_classes()
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


# the keys that tag a value (see the module's docstring), and the types JSON leaves as they are
_TAGS = frozenset(
    {
        "__array__",
        "__ndarray__",
        "__complex__",
        "__tuple__",
        "__items__",
        "__qiskit__",
        "__repr__",
        "__enum__",
    }
)
_LEAVES = frozenset({str, int, float, bool, type(None)})


class _Decoder:
    """The inverse of :class:`_Encoder`, for data from an untrusted peer."""

    def __init__(self, arrays: list[np.ndarray] | None):
        self.arrays = arrays
        self._classes: dict[str, type] | None = None

    def value(self, obj: Any) -> Any:
        t = type(obj)
        if t is dict:
            if _TAGS.isdisjoint(obj):
                return {k: v if type(v) in _LEAVES else self.value(v) for k, v in obj.items()}
            return self._tagged(obj)
        if t is list:
            return [x if type(x) in _LEAVES else self.value(x) for x in obj]
        if isinstance(obj, list):
            return [self.value(x) for x in obj]
        if not isinstance(obj, dict):
            return obj
        return self._tagged(obj)

    def _tagged(self, obj: dict) -> Any:
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

# The layout of records as the store keeps them (:func:`encode_record`, prefix version 2). What
# travels over HTTP (:func:`encode_columnar`) stays version 1, so every qjm client reads it.
RECORD_VERSION = 2
_VERSIONS = (VERSION, RECORD_VERSION)
_DTYPE_STR: dict[np.dtype, str] = {}  # numpy computes dtype.str anew on every call


def _narrow(arr: np.ndarray, signed: bool = True) -> np.ndarray:
    """Outcomes or counts in the smallest unsigned type that holds them (``signed=False``: an
    unsigned array, its minimum not looked at)."""
    if arr.dtype not in (np.uint64, np.int64) or arr.ndim != 1:
        return arr
    top = int(arr.max()) if arr.size else 0
    if signed and arr.size and int(arr.min()) < 0:
        return arr
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return arr.astype(dtype)
    return arr.astype(np.uint64)


def _small(lengths: list[int]) -> np.ndarray:
    """Non-negative Python ints as an array of the smallest unsigned type that holds them."""
    top = max(lengths, default=0)
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return np.array(lengths, dtype=dtype)
    return np.array(lengths, dtype=np.uint64)


def _json(obj: Any) -> bool:
    """JSON as it is: dicts with string keys, lists, str, int, float, bool, None (exact types),
    all the way down."""
    t = type(obj)
    if t is str or t is int or t is float or t is bool or obj is None:
        return True
    if t is dict:
        for k, v in obj.items():
            if type(k) is not str or not _json(v):
                return False
        return True
    if t is list:
        for v in obj:
            if not _json(v):
                return False
        return True
    return False


def _widen(arr: np.ndarray, dtype: type) -> np.ndarray:
    if arr.ndim == 1:
        return arr.astype(dtype)  # a fresh, writable array in the kernels' type
    return arr.copy()  # packed-bit rows: uint8, as the kernels keep them


def encode_columnar(record: Any) -> bytes:
    """A :class:`~qjm.records.JobRecord` in the columnar wire format (version 1: every
    experiment whole, its arrays its own)."""
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
    """Any job record (circuits or primitives) in the columnar format, as the store keeps it.

    A circuits job's record is written in the pooled layout (prefix version 2), made to be
    written and read with little work per experiment:

    * the count keys, the counts and the level-2 memory of all experiments are each one array
      (``"pools"``), with each experiment's length; an experiment's arrays are slices of them
      (experiments wider than 64 clbits keep arrays of their own, as in version 1);
    * each experiment says in the header its ``success``, its width and whether its arrays are
      in the pools; all else of it (its fields, data, arrays of its own) is one JSON string
      (``"j"``), parsed only when the experiment is read, so that holding a parsed header
      holds a few Python objects per experiment, not dozens;
    * the experiments' fields are written as the first experiment's (``"template"``, one JSON
      string, parsed when an experiment's fields or header are first read) and, for
      each other one, what differs from it (``"d"``: ``"s"`` values set, ``"m"`` dicts merged
      one level down, ``"x"`` keys removed). A value is taken as the template's only when it
      has the same type and compares equal (``==``), and the template's value holds nothing but
      JSON types; anything else is written out for the experiment itself (``"f"``: all its
      fields, when they cannot be written as a difference).

    Each experiment also says its ``success`` in the header, so a job's state is read without
    its arrays.
    """
    blob = getattr(record, "blob", None)
    if isinstance(blob, bytes):  # a qjm.records.PooledRecord: these are its bytes
        return blob
    if hasattr(record, "pubs"):
        return encode_primitive(record)
    return _encode_pooled(record)


def _plain(obj: Any) -> bool:
    """Comparable as JSON: str, int, float, bool, None and lists of them, and empty dicts
    (exact types, no subclasses). A dict with items is not (``==`` ignores the order of its
    keys, which a record keeps)."""
    t = type(obj)
    if t is str or t is int or t is float or t is bool or obj is None:
        return True
    if t is list:
        for v in obj:
            if not _plain(v):
                return False
        return True
    return t is dict and not obj


_MISSING = object()


def _differences(value: dict, like: dict, plain: dict, enc: _Encoder, nested: bool) -> dict | None:
    """What differs between an experiment's dict and the template's: ``"s"`` values set,
    ``"m"`` dicts merged one level down (when ``nested``), ``"x"`` keys removed, ``"o"`` the
    order of the keys when it is not the template's; None when it cannot be written so (a key
    that is not a string)."""
    sets: dict[str, Any] = {}
    merges: dict[str, Any] = {}
    gone = []
    for key, like_value in like.items():
        sub = value.get(key, _MISSING)
        if sub is like_value:
            continue
        if sub is _MISSING:
            gone.append(key)
            continue
        is_plain = plain[key]
        sub_plain = None
        if nested:
            is_plain, sub_plain = is_plain
        if is_plain and type(sub) is type(like_value):
            # the same type and equal: written once, in the template (-0.0 is not 0.0 here)
            try:
                if sub == like_value and (
                    type(like_value) is not float
                    or like_value != 0.0
                    or str(sub) == str(like_value)
                ):
                    continue
            except Exception:  # noqa: BLE001, S112 - written out below
                pass
        if sub_plain is not None and type(sub) is dict:
            merged = _differences(sub, like_value, sub_plain, enc, False)
            if merged is not None:
                merges[key] = merged
                continue
        sets[key] = enc.value(sub)
    if len(value) != len(like) - len(gone):
        for key in value:
            if key not in like:
                if type(key) is not str:
                    return None
                sets[key] = enc.value(value[key])
    out: dict[str, Any] = {}
    if sets:
        out["s"] = sets
    if merges:
        out["m"] = merges
    if gone:
        out["x"] = gone
    keys = list(value)
    if keys != list(like):  # the order the changes above leave, unless said otherwise
        left = [k for k in like if k in value] + [k for k in value if k not in like]
        if keys != left:
            out["o"] = keys
    return out


def _diff(fields: dict, template: dict, plain: dict, enc: _Encoder) -> dict | None:
    """An experiment's fields as what differs from the template, or None when they cannot be
    written so."""
    if type(fields) is not dict:
        return None
    return _differences(fields, template, plain, enc, True)


def _encode_pooled(record: Any) -> bytes:
    enc = _Encoder(collect_arrays=True)
    exps = record.experiments
    template = exps[0].fields if exps else None
    if type(template) is not dict or any(type(k) is not str for k in template):
        template = None
    plain: dict[str, tuple[bool, dict | None]] = {}
    if template is not None and len(exps) > 1:  # what the others may share with it
        for key, like in template.items():
            sub_plain = None
            if type(like) is dict and all(type(k) is str for k in like):
                sub_plain = {k: _plain(v) for k, v in like.items()}
            plain[key] = (_plain(like), sub_plain)
    items = []
    keys_pool: list[np.ndarray] = []
    values_pool: list[np.ndarray] = []
    counts_lengths: list[int] = []
    memory_pool: list[np.ndarray] = []
    memory_lengths: list[int] = []
    dumps = _item_json
    for i, exp in enumerate(exps):
        item: dict[str, Any] = {"success": bool(exp.success), "width": int(exp.width)}
        rest: dict[str, Any] = {}  # written as one JSON string (see PooledReader)
        if i and template is not None:
            diff = _diff(exp.fields, template, plain, enc)
            if diff is None:
                rest["f"] = enc.value(exp.fields)
            elif diff:
                rest["d"] = diff
        elif template is None:
            rest["f"] = enc.value(exp.fields)
        if exp.data:
            rest["data"] = enc.value(exp.data)
        if exp.counts is not None:
            keys, values = exp.counts
            if keys.ndim == 1 and values.ndim == 1 and keys.dtype == np.uint64:
                keys_pool.append(keys)
                values_pool.append(values)
                counts_lengths.append(len(keys))
                item["c"] = 1
            else:
                rest["c"] = [enc.array(_narrow(keys)), enc.array(_narrow(values))]
        if exp.memory is not None:
            if exp.memory.ndim == 1 and exp.memory.dtype == np.uint64:
                memory_pool.append(exp.memory)
                memory_lengths.append(len(exp.memory))
                item["m"] = 1
            else:
                rest["m"] = enc.array(_narrow(exp.memory))
        if rest:
            item["j"] = dumps(rest)
        items.append(item)
    pools: dict[str, Any] = {}
    if keys_pool:
        keys = keys_pool[0] if len(keys_pool) == 1 else np.concatenate(keys_pool)
        values = values_pool[0] if len(values_pool) == 1 else np.concatenate(values_pool)
        pools["counts"] = [
            enc.array(_narrow(keys, signed=False)),
            enc.array(_narrow(values.astype(np.int64, copy=False))),
            enc.array(_small(counts_lengths)),
        ]
    if memory_pool:
        memory = memory_pool[0] if len(memory_pool) == 1 else np.concatenate(memory_pool)
        pools["memory"] = [
            enc.array(_narrow(memory, signed=False)),
            enc.array(_small(memory_lengths)),
        ]
    if template is not None:  # JSON values go into the JSON as they are (checked, not copied)
        # one JSON string, parsed only when it is needed: a parsed header then holds a few
        # Python objects per record, not the dozens of a simulator's metadata
        template = _item_json({k: v if _json(v) else enc.value(v) for k, v in template.items()})
    header = {
        "layout": "pooled",
        "fields": enc.value(record.fields),
        "template": template,
        "experiments": items,
        "pools": pools,
    }
    return _pack(header, enc, RECORD_VERSION)


# an experiment's own fields, data and unpooled arrays, as one JSON string inside the header
_ITEM_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=True)


def _item_json_encoder() -> Callable[[Any], str]:
    """``_ITEM_JSON.encode``, without building an encoder on every call (CPython's C encoder,
    made once; the values are JSON already, so no check for cycles)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return _ITEM_JSON.encode

    def fail(obj: Any) -> Any:
        raise TypeError(f"not JSON: {type(obj).__name__}")

    encoder = make(
        None, fail, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True
    )

    def encode(obj: Any) -> str:
        return "".join(encoder(obj, 0))

    return encode


_item_json = _item_json_encoder()
_ITEM_DECODE = json.JSONDecoder().raw_decode


def _own_json(item: dict, k: int) -> dict:
    """What experiment ``k`` keeps of its own (its ``"j"`` string, parsed), or {}.

    Raises:
        WireError: it is not a JSON object.
    """
    text = item.get("j")
    if text is None:
        return {}
    if type(text) is str:
        rest, end = _ITEM_DECODE(text)
        if type(rest) is dict and end == len(text):
            return rest
    raise WireError(f"columnar result: experiment {k}'s own fields are not a JSON object")


def _parsed_template(template: dict | str | None) -> dict | None:
    """A pooled record's template of fields as JSON values (parsed when it is JSON text).

    Raises:
        WireError: it is not a JSON object.
    """
    if type(template) is str:
        text = template
        try:
            template, end = _ITEM_DECODE(text)
        except ValueError as exc:
            raise WireError(f"columnar result: the template of the fields: {exc}") from exc
        if end != len(text):
            raise WireError("columnar result: the template of the fields is not one JSON value")
    if template is not None and type(template) is not dict:
        raise WireError("columnar result: the template of the fields is not an object")
    return template


def _pack(header: dict, enc: _Encoder, version: int = VERSION) -> bytes:
    table = []
    offset = 0
    for arr in enc.arrays:
        dtype = _DTYPE_STR.get(arr.dtype)
        if dtype is None:
            dtype = _DTYPE_STR[arr.dtype] = arr.dtype.str
        table.append([dtype, list(arr.shape), offset, arr.nbytes])
        offset += (arr.nbytes + 7) // 8 * 8
    raw = json.dumps(dict(header, arrays=table), separators=(",", ":"), allow_nan=True).encode()
    parts = [_PREFIX.pack(MAGIC, version, 0, len(raw)), raw]
    size = _PREFIX.size + len(raw)
    parts.append(b"\0" * (-size % 8))
    for arr in enc.arrays:
        parts.append(arr.data if arr.flags.c_contiguous else arr.tobytes())
        parts.append(b"\0" * (-arr.nbytes % 8))
    return b"".join(parts)


def _unpack(data: bytes | bytearray | memoryview) -> tuple[dict, list[np.ndarray], int]:
    """The header, the arrays and the layout version of a columnar message (checked against
    its own size)."""
    view = memoryview(data)
    if len(view) < _PREFIX.size:
        raise WireError("columnar result: shorter than its prefix")
    magic, version, _flags, hlen = _PREFIX.unpack_from(view)
    if magic != MAGIC:
        raise WireError("columnar result: wrong magic bytes (not a qjm columnar result)")
    if version not in _VERSIONS:
        raise WireError(
            f"columnar result: format version {version}; this qjm reads "
            + ", ".join(map(str, _VERSIONS))
        )
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
    with _Malformed("columnar result: malformed array table"):
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
    return header, arrays, version


def decode_record(data: bytes | bytearray | memoryview) -> Any:
    """Any job record from :func:`encode_record` (or :func:`encode_columnar`).

    Raises:
        WireError: ``data`` is not in the columnar format.
    """
    header, arrays, version = _unpack(data)
    if header.get("kind") == "primitive":
        return _primitive_from(header, arrays)
    if version == RECORD_VERSION:
        return _pooled_from(header, arrays)
    return _columnar_from(header, arrays)


def record_successes(header: dict) -> list[bool] | None:
    """Whether each experiment of a pooled record (version 2) succeeded, from its parsed JSON
    header alone; None for another layout."""
    if header.get("layout") != "pooled" or not isinstance(header.get("experiments"), list):
        return None
    return [bool(e.get("success")) if isinstance(e, dict) else False for e in header["experiments"]]


def _primitive_from(header: dict, arrays: list[np.ndarray]) -> Any:
    from qjm.pubrecords import PrimitiveJobRecord, PubRecord

    with _Malformed("columnar result: malformed header"):
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


def decode_columnar(data: bytes | bytearray | memoryview) -> Any:
    """A :class:`~qjm.records.JobRecord` from the columnar format (either layout).

    Raises:
        WireError: ``data`` is not in that format (or is cut short).
    """
    header, arrays, version = _unpack(data)
    if header.get("kind") == "primitive":
        raise WireError("columnar result: a primitive job's record, not a circuits job's")
    if version == RECORD_VERSION:
        return _pooled_from(header, arrays)
    return _columnar_from(header, arrays)


def _columnar_from(header: dict, arrays: list[np.ndarray]) -> Any:
    from qjm.records import ExperimentRecord, JobRecord

    with _Malformed("columnar result: malformed header"):
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


def _apply(fields: dict, diff: dict, dec: _Decoder) -> dict:
    """``fields`` (a copy of the template's) changed as ``diff`` says (see :func:`_differences`;
    the ``"m"`` merges are the caller's)."""
    sets = diff.get("s")
    if sets:
        for key, value in sets.items():  # key by key: a field named like a tag is a field
            fields[key] = value if type(value) in _LEAVES else dec.value(value)
    gone = diff.get("x")
    if gone:
        for key in gone:
            del fields[key]
    order = diff.get("o")
    if order:
        if len(order) != len(fields):
            raise WireError("columnar result: an experiment's key order does not match its keys")
        return {key: fields[key] for key in order}
    return fields


def _pooled_from(header: dict, arrays: list[np.ndarray]) -> Any:
    """A :class:`~qjm.records.JobRecord` from the pooled layout (see :func:`encode_record`),
    every experiment decoded now."""
    from qjm.records import JobRecord

    reader = PooledReader(header=header, arrays=arrays)
    experiments = [reader.experiment(k, keep=False) for k in range(len(reader))]
    return JobRecord(fields=reader.fields(), experiments=experiments)


class PooledReader:
    """The experiments of a record in the pooled layout (:func:`encode_record`), each decoded
    when asked for: its fields from the template and its differences, its arrays sliced from
    the pools and widened to the kernels' types. The header, the array table and the pools'
    lengths are checked when the reader is made.

    Raises:
        WireError: the bytes are not a pooled record, or (when an experiment is read) its part
            of the header is malformed.
    """

    def __init__(
        self,
        data: bytes | bytearray | memoryview | None = None,
        header: dict | None = None,
        arrays: list[np.ndarray] | None = None,
    ):
        if header is None:
            header, arrays, version = _unpack(data)
            if version != RECORD_VERSION or header.get("kind") == "primitive":
                raise WireError("columnar result: not a record in the pooled layout")
        with _Malformed("columnar result: malformed header"):
            dec = self._dec = _Decoder(arrays)
            template = header["template"]  # decoded when an experiment's fields are first read
            if template is not None and not isinstance(template, (dict, str)):
                raise WireError("columnar result: the template of the fields is not an object")
            items = header["experiments"]
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise WireError("columnar result: the experiments are not a list of objects")
            pools = header.get("pools") or {}
            self._keys = self._values = self._memory = None
            counts_at: list[int] = []
            memory_at: list[int] = []
            if "counts" in pools:
                kref, vref, lref = pools["counts"]
                self._keys, self._values = dec.value(kref), dec.value(vref)
                counts_at = _starts(dec.value(lref), len(self._keys))
                if self._keys.ndim != 1 or len(self._values) != len(self._keys):
                    raise WireError("columnar result: the pooled counts do not add up")
            if "memory" in pools:
                mref, lref = pools["memory"]
                self._memory = dec.value(mref)
                memory_at = _starts(dec.value(lref), len(self._memory))
                if self._memory.ndim != 1:
                    raise WireError("columnar result: the pooled memory does not add up")
            # where each experiment's arrays lie in the pools
            self._counts_span: list[tuple[int, int] | None] = []
            self._memory_span: list[tuple[int, int] | None] = []
            c_next = m_next = 0
            for item in items:
                span = None
                if item.get("c") == 1:
                    span = (counts_at[c_next], counts_at[c_next + 1])
                    c_next += 1
                self._counts_span.append(span)
                span = None
                if item.get("m") == 1:
                    span = (memory_at[m_next], memory_at[m_next + 1])
                    m_next += 1
                self._memory_span.append(span)
            if c_next != max(0, len(counts_at) - 1) or m_next != max(0, len(memory_at) - 1):
                raise WireError("columnar result: the pools hold arrays of no experiment")
        self._template = template
        self._template_decoded = False
        self._template_header: Any = None  # the template's header alone, once decoded
        self._items: list[dict | None] = items  # each dropped once its experiment is read
        self._successes = [bool(item.get("success")) for item in items]
        self._fields = header.get("fields")

    def __len__(self) -> int:
        return len(self._items)

    def successes(self) -> list[bool]:
        """Whether each experiment succeeded, from the header alone."""
        return list(self._successes)

    def _decoded_template(self) -> dict | None:
        """The fields most experiments share, decoded once (a status or a histogram never
        needs them)."""
        if not self._template_decoded:
            template = self._dec.value(_parsed_template(self._template))
            self._template, self._template_decoded = template, True
        return self._template

    def fields(self) -> dict:
        """The job's fields (the ``Result`` attributes other than its experiments)."""
        try:
            fields = self._dec.value(self._fields)
        except WireError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise WireError(f"columnar result: malformed fields ({exc})") from exc
        if not isinstance(fields, dict):
            raise WireError("columnar result: the job's fields are not an object")
        return fields

    def experiment(self, k: int, keep: bool = True) -> Any:
        """Experiment ``k``, decoded (an :class:`~qjm.records.ExperimentRecord` of its own);
        without ``keep``, its part of the header is let go (it cannot be read again)."""
        from qjm.records import ExperimentRecord

        item = self._items[k]
        if item is None:
            raise WireError(f"columnar result: experiment {k} was read already")
        if not keep:
            self._items[k] = None
        dec = self._dec
        with _Malformed("columnar result: experiment {} is malformed", k):
            rest = _own_json(item, k)
            if rest:
                item = {**item, **rest}
            if "f" in item:
                fields = dec.value(item["f"])
            else:
                template = self._decoded_template()
                if template is None:
                    raise WireError("columnar result: an experiment's fields are missing")
                fields = dict(template)
                diff = item.get("d")
                if diff:
                    merges = diff.get("m")
                    if merges:
                        for key, sub in merges.items():
                            fields[key] = _apply(dict(template[key]), sub, dec)
                    fields = _apply(fields, diff, dec)
            if not isinstance(fields, dict):
                raise WireError("columnar result: an experiment's fields are not an object")
            data = item.get("data")
            exp = ExperimentRecord(
                fields=fields,
                width=int(item["width"]),
                data={} if data is None else dec.value(data),
            )
            counts = item.get("c")
            span = self._counts_span[k]
            if span is not None:
                exp.counts = self._pooled_counts(span)
            elif counts is not None:
                keys, values = (dec.value(x) for x in counts)
                exp.counts = (_widen(keys, np.uint64), values.astype(np.int64))
            span = self._memory_span[k]
            if span is not None:
                exp.memory = _widen(self._memory[span[0] : span[1]], np.uint64)
            elif item.get("m") is not None:
                exp.memory = _widen(dec.value(item["m"]), np.uint64)
            return exp

    def counts_and_header(self, k: int) -> tuple[np.ndarray, np.ndarray, dict] | None:
        """Experiment ``k``'s histogram (outcomes and counts, in the kernels' types) and its
        header, without decoding the rest of it; None when it is not that simple (its counts
        are not pooled, it keeps data or fields of its own): read the experiment then."""
        span = self._counts_span[k]
        item = self._items[k]
        template = self._template
        if span is None or item is None or template is None:
            return None
        try:
            rest = _own_json(item, k)
            if len(rest.keys() - {"d"}):  # fields, data or arrays of its own
                return None
            diff = rest.get("d")
            if self._template_decoded:
                header = template.get("header")
            else:  # only the template's header is needed: decoded once
                header = self._template_header
                if header is None:
                    parsed = _parsed_template(template).get("header")
                    header = self._template_header = self._dec.value(parsed)
            if diff:
                if "header" in (diff.get("s") or ()) or "header" in (diff.get("x") or ()):
                    return None
                sub = (diff.get("m") or {}).get("header")
                if sub:
                    header = _apply(dict(header), sub, self._dec)
            if type(header) is not dict:
                return None
            keys, values = self._pooled_counts(span)
        except Exception:  # noqa: BLE001 - read the whole experiment, which says what is wrong
            return None
        return keys, values, header

    def _pooled_counts(self, span: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        a, b = span
        keys, values = self._wide_counts()
        if keys is None:  # a large pool: this experiment's part only
            return _widen(self._keys[a:b], np.uint64), self._values[a:b].astype(np.int64)
        return keys[a:b], values[a:b]

    def _wide_counts(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The pooled counts in the kernels' types, widened once for the whole job (the
        experiments' arrays are views of them), unless the pool is large."""
        wide = self.__dict__.get("_wide")
        if wide is None:
            if len(self._keys) > _WIDEN_WHOLE:
                wide = (None, None)
            else:
                wide = (_widen(self._keys, np.uint64), self._values.astype(np.int64))
            self._wide = wide
        return wide


_WIDEN_WHOLE = 1 << 18  # pooled counts up to this many are widened at once


def _starts(lengths: Any, total: int) -> list[int]:
    """Where each array of a pool starts (and the end), from their lengths."""
    if not isinstance(lengths, np.ndarray) or lengths.ndim != 1 or lengths.dtype.kind not in "iu":
        raise WireError("columnar result: a pool's lengths are not a list of integers")
    starts = [0]
    for n in lengths.astype(np.int64).tolist():
        if n < 0:
            raise WireError("columnar result: a pool's lengths are negative")
        starts.append(starts[-1] + n)
    if starts[-1] != total:
        raise WireError("columnar result: a pool's lengths do not add up to the pool")
    return starts


# -- qiskit Result JSON ------------------------------------------------------------------------


def encode_result_json(result: Any) -> bytes:
    """qiskit's ``Result.to_dict()`` as JSON bytes (arrays and complex numbers tagged)."""
    return json.dumps(encode_value(result.to_dict()), separators=(",", ":")).encode()


def decode_result_json(data: bytes | str) -> Any:
    """The ``qiskit.result.Result`` of :func:`encode_result_json`."""
    from qiskit.result import Result

    with _Malformed("result JSON: not a qiskit Result"):
        return Result.from_dict(decode_value(json.loads(data)))


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
