"""Pure-Python/numpy twin of the compiled merge kernels ``qjm._merge``.

Every function here has exactly the signature, the results and the errors of its compiled
counterpart in ``qjm/_merge.pyx``; the package uses this module when the extension is missing or
``QJM_PUREPYTHON=1`` is set, and the tests run the same cases on both.

Representation of a set of classical outcomes of ``width`` bits (clbit 0 is the least significant):

* ``width <= 64``: a 1-D ``numpy.uint64`` array, one integer per outcome;
* ``width > 64``: a 2-D ``numpy.uint8`` array of shape ``(n, ceil(width / 8))``, big-endian bytes per
  row (clbit ``k`` is bit ``k % 8`` of byte ``nbytes - 1 - k // 8``), the layout of qiskit's
  ``BitArray.array``.

Counts are 1-D ``numpy.int64`` arrays of non-negative values.

``bitarray_counts`` and ``join_shots`` take Sampler V2's bit arrays as qiskit's ``BitArray.array``
holds them: uint8 of shape ``(*shape, shots, nbytes)``, each row an outcome in the packed layout
above (bits above ``num_bits`` in a row's first byte are not part of the outcome).
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Sequence

import numpy as np

__all__ = [
    "parse_hex",
    "parse_hex_canonical",
    "parse_bits",
    "merge_counts",
    "format_bits",
    "marginal_counts",
    "marginal_memory",
    "expectation_z",
    "bitarray_counts",
    "join_shots",
]

_INT64_MAX = (1 << 63) - 1
_LOW32 = np.int64(0xFFFFFFFF)


# --------------------------------------------------------------------------------------------
# validation helpers (the compiled module has the same ones, with the same messages)
# --------------------------------------------------------------------------------------------


def _check_width(width: int) -> int:
    width = operator.index(width)
    if width < 0:
        raise ValueError(f"width must be >= 0, got {width}")
    return width


def _keys_array(keys) -> np.ndarray:
    """``keys`` as a C-contiguous 1-D uint64 or 2-D uint8 array (no copy when already one)."""
    a = np.asarray(keys)
    if a.ndim == 1:
        if a.dtype != np.uint64:
            if a.size == 0:
                a = np.zeros(0, dtype=np.uint64)
            elif a.dtype.kind == "u":
                a = a.astype(np.uint64)
            elif a.dtype.kind == "i":
                if (a < 0).any():
                    raise ValueError("outcome keys must be non-negative")
                a = a.astype(np.uint64)
            else:
                raise TypeError(f"outcome keys must be uint64 integers, got dtype {a.dtype}")
        return np.ascontiguousarray(a)
    if a.ndim == 2:
        if a.dtype != np.uint8:
            raise TypeError(f"packed outcome rows must be uint8, got dtype {a.dtype}")
        return np.ascontiguousarray(a)
    raise ValueError(f"outcome keys must be a 1-D or 2-D array, got {a.ndim} dimensions")


def _counts_array(counts) -> np.ndarray:
    """``counts`` as a C-contiguous 1-D int64 array."""
    a = np.asarray(counts)
    if a.ndim != 1:
        raise ValueError(f"counts must be a 1-D array, got {a.ndim} dimensions")
    if a.dtype != np.int64:
        if a.size == 0:
            a = np.zeros(0, dtype=np.int64)
        elif a.dtype.kind == "u":
            if int(a.max()) > _INT64_MAX:
                raise OverflowError("a count does not fit in int64")
            a = a.astype(np.int64)
        elif a.dtype.kind == "i":
            a = a.astype(np.int64)
        else:
            raise TypeError(f"counts must be integers, got dtype {a.dtype}")
    return np.ascontiguousarray(a)


def _check_pair(keys: np.ndarray, counts: np.ndarray) -> None:
    if keys.shape[0] != counts.shape[0]:
        raise ValueError(f"{keys.shape[0]} keys but {counts.shape[0]} counts")


def _check_keys_width(keys: np.ndarray, width: int) -> None:
    if width <= 64:
        if keys.ndim != 1:
            raise ValueError(f"outcomes of {width} bits must be a 1-D uint64 array")
    else:
        nbytes = (width + 7) // 8
        if keys.ndim != 2 or keys.shape[1] != nbytes:
            raise ValueError(f"outcomes of {width} bits must be uint8 rows of {nbytes} bytes")


def _check_indices(indices: Sequence[int], width: int) -> list[int]:
    out = [operator.index(i) for i in indices]
    seen = set()
    for i in out:
        if i < 0 or i >= width:
            raise ValueError(f"index {i} is outside 0..{width - 1}")
        if i in seen:
            raise ValueError(f"index {i} is repeated")
        seen.add(i)
    return out


def _check_strings(strings: Sequence[str]) -> tuple[list[str], int]:
    """The strings as a list, and the index of the first item that is not a str (or -1)."""
    if isinstance(strings, (str, bytes)):
        raise TypeError("strings must be a sequence of str, not a single string")
    items = list(strings)
    for i, s in enumerate(items):
        if not isinstance(s, str):
            return items, i
    return items, -1


def _raise_type(strings: list, index: int) -> None:
    raise TypeError(f"outcomes must be str, got {type(strings[index]).__name__} at index {index}")


def _exact_sums(counts: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Sums of ``counts`` over the groups beginning at ``starts``; OverflowError past int64."""
    lo = np.add.reduceat(counts & _LOW32, starts)
    hi = np.add.reduceat(counts >> 32, starts) + (lo >> 32)
    if hi.size and int(hi.max()) >= 1 << 31:
        raise OverflowError("a merged count does not fit in int64")
    return (hi << 32) | (lo & _LOW32)


def _exact_total(counts: np.ndarray) -> int:
    """Exact sum of non-negative int64 counts as a Python int."""
    lo = int(np.sum(counts & _LOW32, dtype=np.uint64))
    hi = int(np.sum(counts >> 32, dtype=np.uint64))
    return (hi << 32) + lo


def _empty_keys(width_or_nbytes: int | None) -> np.ndarray:
    if width_or_nbytes is None:
        return np.zeros(0, dtype=np.uint64)
    return np.zeros((0, width_or_nbytes), dtype=np.uint8)


# --------------------------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------------------------


def _codepoints(items: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(n, maxlen) uint32 code points, zero-padded, and the true lengths."""
    n = len(items)
    lens = np.fromiter(map(len, items), dtype=np.int64, count=n)
    maxlen = int(lens.max()) if n else 0
    if maxlen == 0:
        return np.zeros((n, 0), dtype=np.uint32), lens
    arr = np.array(items, dtype=f"<U{maxlen}")
    cps = arr.view(np.uint32).reshape(n, maxlen)
    return cps, lens


def _finish(
    items: list[str],
    width: int,
    digits: np.ndarray,
    value: np.ndarray,
    ok: np.ndarray,
    ndigits: np.ndarray,
    bits_per_digit: int,
    kind: str,
) -> np.ndarray:
    """Shared tail of parse_hex/parse_bits.

    digits: (n, m) digit values, ``value`` (n, m) bool marks the digit positions; ok: (n,) no invalid
    character; ndigits: number of digits per string.
    """
    n = len(items)
    ok = ok & (ndigits > 0)
    # bit length of each value: the position (from the right) of the most significant nonzero digit
    nonzero = value & (digits != 0)
    rank = np.cumsum(value[:, ::-1], axis=1)[:, ::-1] - value  # digits to the right of each one
    top_digit = np.where(nonzero, rank, -1).max(axis=1, initial=-1)  # -1: value is zero
    top_value = np.zeros(n, dtype=np.int64)
    has = top_digit >= 0
    if has.any():
        rows = np.flatnonzero(has)
        cols = np.argmax(nonzero[rows], axis=1)  # first nonzero digit from the left
        top_value[rows] = digits[rows, cols]
    bitlen = np.where(has, bits_per_digit * top_digit + _bit_length_small(top_value), 0)
    wide = bitlen > width
    bad = ~ok | wide
    if bad.any():
        i = int(np.argmax(bad))
        if not ok[i]:
            raise ValueError(f"invalid {kind} outcome {items[i]!r}")
        raise ValueError(f"outcome {items[i]!r} does not fit in {width} bits")

    nbytes = 8 if width <= 64 else (width + 7) // 8
    ncells = 8 * nbytes // bits_per_digit  # digit cells of the output, right-aligned
    cells = np.zeros((n, ncells), dtype=np.uint8)
    sel = value & (rank < ncells)
    r, c = np.nonzero(sel)
    cells[r, ncells - 1 - rank[r, c]] = digits[r, c]
    if bits_per_digit == 4:
        packed = (cells[:, 0::2] << 4) | cells[:, 1::2]
    else:
        packed = np.packbits(cells, axis=1)
    packed = np.ascontiguousarray(packed, dtype=np.uint8)
    if width <= 64:
        return packed.view(">u8").reshape(n).astype(np.uint64)
    return packed


def _bit_length_small(v: np.ndarray) -> np.ndarray:
    """Bit length of small non-negative integers (< 16)."""
    return (v >= 1).astype(np.int64) + (v >= 2) + (v >= 4) + (v >= 8)


def _ints_to_keys(ints: list[int], width: int) -> np.ndarray | None:
    """Python ints to the representation; None when one does not fit in ``width`` bits."""
    n = len(ints)
    if width <= 64:
        try:
            arr = np.array(ints, dtype=np.uint64).reshape(n)
        except OverflowError:
            return None
        if width < 64 and n and (arr >> np.uint64(width)).any():
            return None
        return arr
    nb = (width + 7) // 8
    try:
        raw = b"".join([v.to_bytes(nb, "big") for v in ints])
    except OverflowError:
        return None
    arr = np.frombuffer(raw, dtype=np.uint8).reshape(n, nb).copy()
    if width % 8 and n and (arr[:, 0] >> (width % 8)).any():
        return None
    return arr


_HEX_CHARS = b"0123456789abcdefABCDEFxX"


def _fast_hex(items: list[str], width: int) -> np.ndarray | None:
    """Valid input the quick way (int(x, 16)); None to let the exact path find the error.

    With only hex digits and x/X in the strings, ``int(s, 16)`` succeeds exactly on the strings
    this module accepts (x only in a leading "0x"; no sign, space or underscore).
    """
    joined = "".join(items)
    if not joined.isascii() or joined.encode("ascii").translate(None, _HEX_CHARS):
        return None
    try:
        ints = [int(s, 16) for s in items]
    except ValueError:
        return None
    return _ints_to_keys(ints, width)


def _fast_bits(items: list[str], width: int) -> np.ndarray | None:
    """Valid input without "0b" prefixes the quick way; None to use the exact path."""
    joined = "".join(items)
    if not joined.isascii():
        return None
    raw = joined.encode("ascii")
    if raw.translate(None, b"01 _"):
        return None  # other characters, or "0b" prefixes: the exact path decides
    try:
        if raw.translate(None, b"01"):
            ints = [int(s.replace(" ", "").replace("_", ""), 2) for s in items]
        else:
            ints = [int(s, 2) for s in items]
    except ValueError:
        return None
    return _ints_to_keys(ints, width)


def _parse_in_order(strings: Sequence[str], width: int, parse) -> np.ndarray:
    """Runs ``parse`` on the strings before the first non-str; the first bad item raises."""
    width = _check_width(width)
    items, bad = _check_strings(strings)
    if bad < 0:
        return parse(items, width)
    parse(items[:bad], width)  # an invalid string before the non-str item wins
    _raise_type(items, bad)


def _after_prefix(cps: np.ndarray, lens: np.ndarray, letter: str) -> np.ndarray:
    """Mask of the characters of each string after an optional "0<letter>" prefix."""
    m = cps.shape[1]
    col = np.arange(m)[None, :]
    within = col < lens[:, None]
    prefix = (lens >= 2) & (m >= 2)
    if m >= 2:
        prefix &= (cps[:, 0] == 48) & ((cps[:, 1] | 0x20) == ord(letter))
    start = np.where(prefix, 2, 0)
    return within & (col >= start[:, None])


def parse_hex(strings: Sequence[str], width: int) -> np.ndarray:
    """Parse hexadecimal outcome strings ("0x1f", "1F", "0x001f") into the outcome representation.

    Raises ValueError naming the first offending string (invalid character, no digits, or a
    value wider than ``width`` bits) and TypeError for an item that is not a str, whichever
    comes first.
    """
    return _parse_in_order(strings, width, _parse_hex)


def _parse_hex(items: list[str], width: int) -> np.ndarray:
    n = len(items)
    if n == 0:
        return _empty_keys(None if width <= 64 else (width + 7) // 8)
    fast = _fast_hex(items, width)
    if fast is not None:
        return fast
    cps, lens = _codepoints(items)
    value = _after_prefix(cps, lens, "x")
    c = cps.astype(np.int64)
    low = c | 0x20
    is_dec = (c >= 48) & (c <= 57)
    is_alpha = (low >= 97) & (low <= 102)
    digits = np.where(is_dec, c - 48, np.where(is_alpha, low - 87, 0)).astype(np.uint8)
    ok = ~(value & ~(is_dec | is_alpha)).any(axis=1)
    ndigits = value.sum(axis=1)
    return _finish(items, width, digits, value, ok, ndigits, 4, "hexadecimal")


def parse_hex_canonical(strings: Sequence[str], width: int) -> tuple[np.ndarray, bool]:
    """Parse like :func:`parse_hex`; also say whether every string is spelled exactly as
    Python's ``hex()`` spells its value ("0x", lowercase, no leading zeros).

    When it is True, ``hex()`` of the outcomes gives the strings back, so they need not be kept.
    Raises as :func:`parse_hex` does.
    """
    items = strings if isinstance(strings, (list, tuple, str, bytes)) else list(strings)
    out = parse_hex(items, width)
    if out.ndim == 1:
        spelled = map(hex, out.tolist())
    else:
        spelled = (hex(int.from_bytes(row.tobytes(), "big")) for row in out)
    return out, all(s == h for s, h in zip(items, spelled))


def parse_bits(strings: Sequence[str], width: int) -> np.ndarray:
    """Parse binary outcome strings ("0101", "0b101", "01 10", "01_10") into the representation.

    Spaces and underscores after the optional "0b" prefix are ignored. Raises ValueError naming
    the first offending string (invalid character, no digits, or a value wider than ``width``
    bits) and TypeError for an item that is not a str, whichever comes first.
    """
    return _parse_in_order(strings, width, _parse_bits)


def _parse_bits(items: list[str], width: int) -> np.ndarray:
    n = len(items)
    if n == 0:
        return _empty_keys(None if width <= 64 else (width + 7) // 8)
    fast = _fast_bits(items, width)
    if fast is not None:
        return fast
    cps, lens = _codepoints(items)
    body = _after_prefix(cps, lens, "b")
    is_bit = (cps == 48) | (cps == 49)
    is_sep = (cps == 32) | (cps == 95)
    ok = ~(body & ~(is_bit | is_sep)).any(axis=1)
    value = body & is_bit
    digits = (cps == 49).astype(np.uint8)
    ndigits = value.sum(axis=1)
    return _finish(items, width, digits, value, ok, ndigits, 1, "binary")


# --------------------------------------------------------------------------------------------
# merging
# --------------------------------------------------------------------------------------------


def _merge_sorted_groups(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique keys in ascending order with summed counts (keys: 1-D uint64 or 2-D uint8 rows)."""
    n = keys.shape[0]
    if n == 0:
        return keys.copy(), np.zeros(0, dtype=np.int64)
    if (counts < 0).any():
        raise ValueError("counts must be non-negative")
    if keys.ndim == 1:
        order = np.argsort(keys)  # equal keys are summed, so stability does not matter
        sk = keys[order]
        new = np.empty(n, dtype=bool)
        new[0] = True
        np.not_equal(sk[1:], sk[:-1], out=new[1:])
    else:
        nbytes = keys.shape[1]
        if nbytes == 0:
            order = np.arange(n)
        else:
            # lexsort: last key is primary; byte 0 (most significant) must be primary
            order = np.lexsort(keys.T[::-1])
        sk = keys[order]
        new = np.empty(n, dtype=bool)
        new[0] = True
        if nbytes:
            np.any(sk[1:] != sk[:-1], axis=1, out=new[1:])
        else:
            new[1:] = False
    starts = np.flatnonzero(new)
    return np.ascontiguousarray(sk[starts]), _exact_sums(counts[order], starts)


def merge_counts(
    keys_list: Sequence[np.ndarray], counts_list: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Join (keys, counts) parts into unique keys in ascending order with summed counts.

    All parts must use the same representation (uint64 or packed rows of one width). Raises
    ValueError for no parts, mismatched parts or negative counts, OverflowError when a sum
    exceeds int64.
    """
    keys_list = list(keys_list)
    counts_list = list(counts_list)
    if len(keys_list) != len(counts_list):
        raise ValueError(f"{len(keys_list)} key arrays but {len(counts_list)} count arrays")
    if not keys_list:
        raise ValueError("merge_counts needs at least one part")
    ks = [_keys_array(k) for k in keys_list]
    cs = [_counts_array(c) for c in counts_list]
    first = ks[0]
    for k, c in zip(ks, cs):
        if k.ndim != first.ndim or (k.ndim == 2 and k.shape[1] != first.shape[1]):
            raise ValueError("all parts must use the same outcome representation")
        _check_pair(k, c)
    keys = np.concatenate(ks) if len(ks) > 1 else ks[0]
    counts = np.concatenate(cs) if len(cs) > 1 else cs[0]
    return _merge_sorted_groups(keys, counts)


# --------------------------------------------------------------------------------------------
# bit arrays: qiskit's BitArray.array (Sampler V2 results)
# --------------------------------------------------------------------------------------------


def _check_num_bits(num_bits: int) -> int:
    num_bits = operator.index(num_bits)
    if num_bits < 0:
        raise ValueError(f"num_bits must be >= 0, got {num_bits}")
    return num_bits


def _bit_rows(array, num_bits: int) -> np.ndarray:
    """A BitArray's array as validated C-contiguous ``(rows, nbytes)`` uint8 rows."""
    a = np.asarray(array)
    if a.dtype != np.uint8:
        raise ValueError(f"a bit array must be uint8, got dtype {a.dtype}")
    if a.ndim < 2:
        raise ValueError(
            f"a bit array has shape (*shape, shots, nbytes), got {a.ndim} dimension(s)"
        )
    nb = (num_bits + 7) // 8
    if a.shape[-1] != nb:
        raise ValueError(
            f"{num_bits} bits take {nb} bytes per shot, but the array has {a.shape[-1]}"
        )
    n = 1
    for d in a.shape[:-1]:
        n *= d
    return np.ascontiguousarray(a).reshape(n, nb)


def _shot_parts(arrays) -> list[np.ndarray]:
    """The shot parts of join_shots as validated C-contiguous uint8 arrays."""
    if isinstance(arrays, np.ndarray):
        raise TypeError("arrays must be a sequence of arrays, not one array")
    parts = [np.asarray(a) for a in arrays]
    if not parts:
        raise ValueError("join_shots needs at least one array")
    for i, a in enumerate(parts):
        if a.dtype != np.uint8:
            raise ValueError(f"shot part {i} must be uint8, got dtype {a.dtype}")
        if a.ndim < 2:
            raise ValueError(
                f"shot part {i} must have shape (*shape, shots, nbytes), got {a.ndim} dimension(s)"
            )
    first = parts[0]
    for i, a in enumerate(parts):
        if a.shape[-1] != first.shape[-1]:
            raise ValueError(
                f"shot part {i} has {a.shape[-1]} bytes per shot, but part 0 has {first.shape[-1]}"
            )
        if a.shape[:-2] != first.shape[:-2]:
            raise ValueError(
                f"shot part {i} has shape {a.shape[:-2]}, but part 0 has {first.shape[:-2]}"
            )
    return [np.ascontiguousarray(a) for a in parts]


def bitarray_counts(array: np.ndarray, num_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of the outcomes of a packed-bit array as qiskit's ``BitArray`` holds them.

    ``array`` is uint8 of shape ``(*shape, shots, nbytes)`` with ``nbytes == ceil(num_bits / 8)``,
    big-endian rows (``BitArray.array``); every row counts, over all of ``shape``. Bits above
    ``num_bits`` in a row's first byte are ignored, as ``BitArray.get_counts`` ignores them.
    Returns (keys, counts): the distinct outcomes in ascending order in the representation for
    ``num_bits`` bits, and how often each occurs (int64), so that
    ``dict(zip(format_bits(keys, num_bits, None), counts.tolist()))`` equals
    ``BitArray(array, num_bits).get_counts()``. Raises ValueError for a negative ``num_bits``,
    an array that is not uint8, has fewer than 2 dimensions or rows of another size.
    """
    num_bits = _check_num_bits(num_bits)
    rows = _bit_rows(array, num_bits)
    n, nb = rows.shape
    if num_bits % 8:
        rows = rows.copy()
        rows[:, 0] &= (1 << (num_bits % 8)) - 1
    if num_bits > 64:
        return _merge_sorted_groups(rows, np.ones(n, dtype=np.int64))
    wide = np.zeros((n, 8), dtype=np.uint8)
    wide[:, 8 - nb :] = rows
    keys = wide.view(">u8").reshape(n).astype(np.uint64)
    uniq, counts = np.unique(keys, return_counts=True)
    return np.ascontiguousarray(uniq, dtype=np.uint64), counts.astype(np.int64)


def join_shots(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Join the bit arrays of several shot parts of one PUB along the shots axis, in order.

    Each array is uint8 of shape ``(*shape, shots_i, nbytes)`` (``BitArray.array``), with the same
    ``shape`` and ``nbytes``; the result is a new C-contiguous uint8 array of shape
    ``(*shape, sum(shots_i), nbytes)``, as ``BitArray.concatenate_shots`` of the parts gives. Raises
    ValueError for no arrays, an array that is not uint8 or has fewer than 2 dimensions, or
    arrays whose ``shape`` or ``nbytes`` differ; TypeError for one array instead of a sequence.
    """
    parts = _shot_parts(arrays)
    return np.ascontiguousarray(np.concatenate(parts, axis=-2))


# --------------------------------------------------------------------------------------------
# formatting
# --------------------------------------------------------------------------------------------


def _register_sizes(creg_sizes) -> list[int]:
    """Register sizes in the order qiskit's ``_separate_bitstring`` walks them (reversed)."""
    sizes = []
    for _, size in reversed(creg_sizes):
        size = operator.index(size)
        if size < 0:
            raise ValueError(f"register size must be >= 0, got {size}")
        if size > sys.maxsize:
            raise OverflowError(f"register size {size} is too large")
        sizes.append(size)
    return sizes


def format_bits(
    keys: np.ndarray, memory_slots: int | None, creg_sizes: Sequence[Sequence] | None
) -> list[str]:
    """Format outcomes exactly as ``qiskit.result.postprocess.format_counts_memory`` does.

    For each key the result equals ``format_counts_memory(hex(key), {"memory_slots": memory_slots,
    "creg_sizes": creg_sizes})``: binary, zero-padded to ``memory_slots`` (never truncated), then
    split into registers (last register first, separated by single spaces) when both
    ``creg_sizes`` and ``memory_slots`` are given.
    """
    arr = _keys_array(keys)
    ms = 0
    if memory_slots:
        ms = operator.index(memory_slots)
        if ms < 0:
            raise ValueError(f"memory_slots must be >= 0, got {ms}")
    sizes = _register_sizes(creg_sizes) if (creg_sizes and ms) else None
    if arr.ndim == 1:
        ints = arr.tolist()
    else:
        raw = arr.tobytes()
        nb = arr.shape[1]
        ints = [int.from_bytes(raw[i * nb : (i + 1) * nb], "big") for i in range(arr.shape[0])]
    spec = f"0{ms}b" if ms else "b"
    strings = [format(v, spec) for v in ints]
    if sizes is None:
        return strings
    out = []
    for s in strings:
        parts = []
        pos = 0
        for size in sizes:
            parts.append(s[pos : pos + size])
            pos += size
        out.append(" ".join(parts))
    return out


# --------------------------------------------------------------------------------------------
# marginals
# --------------------------------------------------------------------------------------------


def _segments(indices: list[int]) -> list[tuple[int, int, int]]:
    """Runs of consecutive indices as (source bit, destination bit, length)."""
    segs = []
    j = 0
    while j < len(indices):
        k = j + 1
        while k < len(indices) and indices[k] == indices[k - 1] + 1:
            k += 1
        segs.append((indices[j], j, k - j))
        j = k
    return segs


def _marginal(keys: np.ndarray, indices: list[int]) -> np.ndarray:
    n = keys.shape[0]
    m = len(indices)
    if keys.ndim == 1:
        out = np.zeros(n, dtype=np.uint64)
        for src, dst, length in _segments(indices):
            mask = np.uint64((1 << length) - 1)
            out |= ((keys >> np.uint64(src)) & mask) << np.uint64(dst)
        return out
    total = 8 * keys.shape[1]
    bits = np.unpackbits(keys, axis=1)  # column c holds clbit total - 1 - c
    sel = bits[:, [total - 1 - i for i in indices]]  # column j holds new bit j
    if m <= 64:
        be = np.zeros((n, 64), dtype=np.uint8)
        be[:, 64 - m :] = sel[:, ::-1]
        return (
            np.ascontiguousarray(np.packbits(be, axis=1)).view(">u8").reshape(n).astype(np.uint64)
        )
    nbo = (m + 7) // 8
    be = np.zeros((n, 8 * nbo), dtype=np.uint8)
    be[:, 8 * nbo - m :] = sel[:, ::-1]
    return np.ascontiguousarray(np.packbits(be, axis=1))


def marginal_memory(memory: np.ndarray, indices: Sequence[int], width: int) -> np.ndarray:
    """Per-shot marginal: new bit j is old bit ``indices[j]``; order of shots kept.

    The result uses the representation for ``len(indices)`` bits. Raises ValueError for an index
    outside ``0..width-1``, a repeated index, or keys that do not match ``width``.
    """
    width = _check_width(width)
    keys = _keys_array(memory)
    _check_keys_width(keys, width)
    idx = _check_indices(indices, width)
    return _marginal(keys, idx)


def marginal_counts(
    keys: np.ndarray, counts: np.ndarray, indices: Sequence[int], width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Marginal counts: new bit j is old bit ``indices[j]``; keys merged (unique, ascending).

    Raises ValueError for an index outside ``0..width-1``, a repeated index, keys that do not
    match ``width`` or negative counts; OverflowError when a sum exceeds int64.
    """
    width = _check_width(width)
    k = _keys_array(keys)
    c = _counts_array(counts)
    _check_keys_width(k, width)
    _check_pair(k, c)
    idx = _check_indices(indices, width)
    return _merge_sorted_groups(_marginal(k, idx), c)


# --------------------------------------------------------------------------------------------
# expectation values
# --------------------------------------------------------------------------------------------


def expectation_z(keys: np.ndarray, counts: np.ndarray, mask: int) -> float:
    """Expectation of the diagonal Pauli with Z on the clbits set in ``mask``.

    ``sum(counts * (-1) ** popcount(key & mask)) / sum(counts)``, computed exactly and rounded
    once. For packed rows the mask is read big-endian over the row's bytes. Raises ValueError
    on a zero total, negative counts or a negative mask.
    """
    k = _keys_array(keys)
    c = _counts_array(counts)
    _check_pair(k, c)
    mask = operator.index(mask)
    if mask < 0:
        raise ValueError("mask must be >= 0")
    if (c < 0).any():
        raise ValueError("counts must be non-negative")
    if k.ndim == 1:
        x = k & np.uint64(mask & 0xFFFFFFFFFFFFFFFF)
        for s in (32, 16, 8, 4, 2, 1):
            x ^= x >> np.uint64(s)
        odd = (x & np.uint64(1)).astype(bool)
    else:
        nb = k.shape[1]
        mb = np.frombuffer((mask & ((1 << (8 * nb)) - 1)).to_bytes(nb, "big"), dtype=np.uint8)
        x = np.bitwise_xor.reduce(k & mb, axis=1) if nb else np.zeros(k.shape[0], np.uint8)
        x = x.astype(np.uint8)
        for s in (4, 2, 1):
            x ^= x >> np.uint8(s)
        odd = (x & 1).astype(bool)
    neg = _exact_total(c[odd])
    pos = _exact_total(c[~odd])
    total = pos + neg
    if total == 0:
        raise ValueError("total counts are zero")
    return (pos - neg) / total
