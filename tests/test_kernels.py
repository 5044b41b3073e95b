"""Tests of the merge kernels: the compiled ``qjm._merge`` and its twin ``qjm._merge_py``.

Every test taking the ``K`` fixture runs once per implementation. The compiled one must be
importable; without it the "cython" cases fail, unless ``QJM_PUREPYTHON=1`` is set, which skips them.
References: plain Python on ``int(x, 16)``, and qiskit (``format_counts_memory``, ``Counts``,
``marginal_distribution``, ``marginal_counts``, ``marginal_memory``, ``sampled_expectation_value``,
``BitArray.get_counts`` and ``BitArray.concatenate_shots``).
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from qiskit.result import Counts, sampled_expectation_value
from qiskit.result import marginal_counts as qiskit_marginal_counts
from qiskit.result import marginal_distribution as qiskit_marginal_distribution
from qiskit.result import marginal_memory as qiskit_marginal_memory
from qiskit.result.postprocess import format_counts_memory

INT64_MAX = (1 << 63) - 1

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _pure_python_requested() -> bool:
    return os.environ.get("QJM_PUREPYTHON", "") not in ("", "0")


class _MissingExtension:
    """Stands in for an extension that did not import: any use fails the test clearly."""

    def __init__(self, message: str):
        self.message = message

    def __getattr__(self, name):
        pytest.fail(self.message, pytrace=False)


def _load(name: str):
    if name == "python":
        return importlib.import_module("qjm._merge_py")
    try:
        return importlib.import_module("qjm._merge")
    except ImportError as exc:
        if _pure_python_requested():
            pytest.skip("QJM_PUREPYTHON=1: compiled kernels not tested")
        return _MissingExtension(
            f"the compiled extension qjm._merge does not import ({exc}); build it with "
            "`python setup.py build_ext --inplace` (or set QJM_PUREPYTHON=1 to test only the "
            "pure-Python twin)"
        )


@pytest.fixture(scope="module", params=["python", "cython"])
def K(request):
    """The kernel module under test (module-scoped so hypothesis can use it)."""
    return _load(request.param)


@pytest.fixture(scope="module")
def PY():
    return _load("python")


@pytest.fixture(scope="module")
def CY():
    return _load("cython")


# ------------------------------------------------------------------------------------------
# references
# ------------------------------------------------------------------------------------------


def nbytes(width: int) -> int:
    return (width + 7) // 8


def ref_keys(values, width: int) -> np.ndarray:
    """The representation of Python ints for `width` bits, built without the kernels."""
    if width <= 64:
        return np.array(values, dtype=np.uint64).reshape(len(values))
    nb = nbytes(width)
    rows = [list(v.to_bytes(nb, "big")) for v in values]
    return np.array(rows, dtype=np.uint8).reshape(len(values), nb)


def to_ints(keys: np.ndarray) -> list[int]:
    if keys.ndim == 1:
        return [int(v) for v in keys.tolist()]
    return [int.from_bytes(row.tobytes(), "big") for row in keys]


def assert_same_array(got: np.ndarray, want: np.ndarray) -> None:
    assert isinstance(got, np.ndarray)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.array_equal(got, want)


def ref_merge(pairs):
    """Sorted (key, total) from (key, count) pairs, or None when a total exceeds int64."""
    total: Counter = Counter()
    for k, c in pairs:
        total[k] += c
    if any(v > INT64_MAX for v in total.values()):
        return None
    return sorted(total.items())


def ref_marginal(v: int, indices) -> int:
    return sum(((v >> i) & 1) << j for j, i in enumerate(indices))


def header(memory_slots, creg_sizes):
    return {"memory_slots": memory_slots, "creg_sizes": creg_sizes}


def outcome(K, func, *args):
    """("ok", result) or (exception type, message): to compare the two implementations."""
    try:
        return ("ok", func(K)(*args))
    except (ValueError, TypeError, OverflowError) as exc:
        return (type(exc), str(exc))


def same_outcome(a, b) -> None:
    assert a[0] == b[0], (a, b)
    if a[0] != "ok":
        assert a[1] == b[1]
        return
    ra, rb = a[1], b[1]
    if isinstance(ra, tuple):
        for x, y in zip(ra, rb):
            assert_same_array(x, y)
    elif isinstance(ra, np.ndarray):
        assert_same_array(ra, rb)
    else:
        assert ra == rb


# ------------------------------------------------------------------------------------------
# strategies
# ------------------------------------------------------------------------------------------


@st.composite
def width_values(draw, min_width=1, max_width=200, max_n=25, min_n=0):
    width = draw(st.integers(min_width, max_width))
    top = (1 << width) - 1
    value = st.one_of(
        st.integers(0, top),
        st.integers(0, min(top, 40)),
        st.sampled_from([0, top, 1 << (width - 1)]),
    )
    values = draw(st.lists(value, min_size=min_n, max_size=max_n))
    return width, values


@st.composite
def hex_string(draw, v: int, width: int) -> str:
    style = draw(st.sampled_from(["aer", "padded", "upper", "bare", "zeros", "mixed"]))
    digits = format(v, "x")
    if style == "aer":
        return hex(v)
    if style == "padded":
        return "0x" + digits.zfill((width + 3) // 4)
    if style == "upper":
        return "0X" + digits.upper()
    if style == "bare":
        return digits if draw(st.booleans()) else digits.upper()
    if style == "zeros":
        return "0x" + "0" * draw(st.integers(1, 30)) + digits
    return "0x" + "".join(c.upper() if draw(st.booleans()) else c for c in digits)


@st.composite
def bit_string(draw, v: int, width: int) -> str:
    style = draw(st.sampled_from(["plain", "padded", "0b", "spaced", "underscored"]))
    digits = format(v, "b")
    if style == "plain":
        return digits
    if style == "padded":
        return digits.zfill(width)
    if style == "0b":
        return "0b" + digits
    sep = " " if style == "spaced" else "_"
    padded = digits.zfill(width)
    cuts = sorted(draw(st.lists(st.integers(1, max(1, len(padded) - 1)), max_size=4)))
    parts, last = [], 0
    for c in cuts:
        parts.append(padded[last:c])
        last = c
    parts.append(padded[last:])
    return sep.join(p for p in parts if p)


@st.composite
def creg_layout(draw, width: int, partition: bool = False):
    """A creg_sizes list: a partition of `width`, or arbitrary sizes (qiskit drops/pads)."""
    if partition or draw(st.booleans()):
        sizes, left = [], width
        while left > 0:
            s = draw(st.integers(1, left))
            sizes.append(s)
            left -= s
    else:
        sizes = draw(st.lists(st.integers(0, 70), min_size=1, max_size=5))
    return [[f"c{i}", s] for i, s in enumerate(sizes)]


counts_strategy = st.one_of(st.integers(0, 1000), st.integers(0, 1 << 62))


# ------------------------------------------------------------------------------------------
# parse_hex / parse_bits
# ------------------------------------------------------------------------------------------


@SETTINGS
@given(data=st.data(), wv=width_values())
def test_parse_hex_matches_int16(K, data, wv):
    width, values = wv
    strings = [data.draw(hex_string(v, width)) for v in values]
    got = K.parse_hex(strings, width)
    assert_same_array(got, ref_keys([int(s, 16) for s in strings], width))
    assert to_ints(got) == values


@SETTINGS
@given(data=st.data(), wv=width_values())
def test_parse_bits_matches_int2(K, data, wv):
    width, values = wv
    strings = [data.draw(bit_string(v, width)) for v in values]
    got = K.parse_bits(strings, width)
    want = [int(s.replace(" ", "").replace("_", ""), 2) for s in strings]
    assert_same_array(got, ref_keys(want, width))


@SETTINGS
@given(data=st.data(), wv=width_values())
def test_parse_hex_canonical_says_whether_hex_gives_the_strings_back(K, data, wv):
    width, values = wv
    strings = [data.draw(hex_string(v, width)) for v in values]
    got, canonical = K.parse_hex_canonical(strings, width)
    assert_same_array(got, K.parse_hex(strings, width))
    assert canonical == all(s == hex(int(s, 16)) for s in strings)


def test_parse_hex_canonical_spellings(K):
    assert K.parse_hex_canonical(["0x1f", "0x0", "0xa"], 8)[1] is True
    assert K.parse_hex_canonical([], 8)[1] is True
    assert K.parse_hex_canonical(["0x" + "f" * 20], 80)[1] is True
    for odd in (
        ["0x1F"],
        ["0x01"],
        ["1f"],
        ["0X1f"],
        ["0x00"],
        ["0x1f", "0xD"],
        ["0x0" + "f" * 20],
    ):
        assert K.parse_hex_canonical(odd, 80)[1] is False, odd
    # more strings than one parse chunk, the odd one last
    many = [hex(i % 1000) for i in range(40000)] + ["0x0A"]
    out, canonical = K.parse_hex_canonical(many, 16)
    assert canonical is False and out[-1] == 10
    assert K.parse_hex_canonical(many[:-1], 16)[1] is True


def test_parse_width_zero(K):
    assert_same_array(K.parse_hex(["0x0", "0", "0X000"], 0), np.zeros(3, np.uint64))
    assert_same_array(K.parse_bits(["0", "0b0", "0 0"], 0), np.zeros(3, np.uint64))
    with pytest.raises(ValueError, match="0x1"):
        K.parse_hex(["0x0", "0x1"], 0)


def test_parse_empty_lists(K):
    assert_same_array(K.parse_hex([], 27), np.zeros(0, np.uint64))
    assert_same_array(K.parse_hex([], 65), np.zeros((0, 9), np.uint8))
    assert_same_array(K.parse_bits((), 200), np.zeros((0, 25), np.uint8))


def test_parse_boundaries(K):
    for width in (1, 7, 8, 63, 64, 65, 72, 128, 200):
        top = (1 << width) - 1
        strings = [hex(top), hex(0), "0x" + "0" * 70 + format(top, "x")]
        assert to_ints(K.parse_hex(strings, width)) == [top, 0, top]
        assert to_ints(K.parse_bits([format(top, "b")], width)) == [top]
        with pytest.raises(ValueError, match="does not fit"):
            K.parse_hex([hex(top + 1)], width)
        with pytest.raises(ValueError, match="does not fit"):
            K.parse_bits([format(top + 1, "b")], width)


def test_parse_accepts_other_sequences(K):
    want = np.array([31, 10], np.uint64)
    assert_same_array(K.parse_hex(("0x1f", "0xa"), 8), want)
    assert_same_array(K.parse_hex(iter(["0x1f", "0xa"]), 8), want)
    assert_same_array(K.parse_hex(np.array(["0x1f", "0xa"]), 8), want)  # np.str_ items
    assert_same_array(K.parse_bits(np.array(["11111", "1010"]), 8), want)


@pytest.mark.parametrize(
    "bad",
    ["", "0x", "0xg1", "1 2", "-1", "+1", "0x_1", " 1", "1 ", "0x1\x00", "\uff11", "0x1é", "0x1 "],
)
def test_parse_hex_invalid(K, bad):
    with pytest.raises(ValueError, match="invalid hexadecimal") as info:
        K.parse_hex(["0x1", bad, "0x2"], 64)
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("bad", ["", "0b", "2", "0x1", "1-0", "1\t0", " ", "_", "0b 1e"])
def test_parse_bits_invalid(K, bad):
    with pytest.raises(ValueError, match="invalid binary") as info:
        K.parse_bits(["1", bad], 100)
    assert repr(bad) in str(info.value)


def test_parse_errors_name_first_offender(K):
    with pytest.raises(ValueError, match=r"'0x100' does not fit in 8 bits"):
        K.parse_hex(["0xff", "0x100", "zz"], 8)
    with pytest.raises(ValueError, match="invalid hexadecimal outcome 'zz'"):
        K.parse_hex(["0xff", "zz", "0x100"], 8)
    with pytest.raises(TypeError, match="at index 1"):
        K.parse_hex(["0x1", 5, "zz"], 8)
    with pytest.raises(ValueError, match="'zz'"):
        K.parse_hex(["0x1", "zz", 5], 8)
    with pytest.raises(TypeError):
        K.parse_hex("0x1f", 8)  # a single string is not a list of outcomes
    with pytest.raises(TypeError):
        K.parse_hex([b"0x1"], 8)
    with pytest.raises(ValueError, match="width"):
        K.parse_hex(["0x1"], -1)
    # lists longer than the chunk (65536) the compiled parser works in
    strings = ["0x1"] * 70000 + ["0xq"] + ["0x1"] * 10
    with pytest.raises(ValueError, match="'0xq'"):
        K.parse_hex(strings, 8)
    strings[70000] = 3.5
    with pytest.raises(TypeError, match="at index 70000"):
        K.parse_hex(strings, 8)
    values = list(range(140_000))
    assert K.parse_hex([hex(v) for v in values], 18).tolist() == values
    assert to_ints(K.parse_hex([hex(v) for v in values], 70)) == values


printable_junk = st.text(alphabet="0123456789abcdefABCDEFxXb _-+\t\x00é", max_size=12)


@SETTINGS
@given(
    items=st.lists(st.one_of(printable_junk, printable_junk, st.integers(0, 9)), max_size=8),
    width=st.integers(0, 130),
)
def test_parse_implementations_agree_on_anything(PY, CY, items, width):
    for name in ("parse_hex", "parse_bits"):
        same_outcome(
            outcome(PY, lambda m, n=name: getattr(m, n), items, width),
            outcome(CY, lambda m, n=name: getattr(m, n), items, width),
        )


def test_parse_keeps_reference_counts(K):
    strings = [hex(i) for i in range(1000, 1100)] + ["0xzz"]
    before = [sys.getrefcount(s) for s in strings]
    K.parse_hex(strings[:-1], 27)
    with pytest.raises(ValueError):
        K.parse_hex(strings, 27)
    with pytest.raises(TypeError):
        K.parse_hex(strings[:5] + [None], 27)
    assert [sys.getrefcount(s) for s in strings] == before


def test_parse_in_two_threads(K):
    rng = np.random.default_rng(5)
    lists = [[hex(int(v)) for v in rng.integers(0, 1 << 27, 50_000)] for _ in range(2)]
    want = [np.array([int(x, 16) for x in m], dtype=np.uint64) for m in lists]
    got = [None, None]

    def work(i):
        for _ in range(5):
            got[i] = K.parse_hex(lists[i], 27)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, w in zip(got, want):
        assert_same_array(g, w)


def test_parse_in_more_threads_than_cores(K):
    """Parsing threads take turns on the GIL; with more of them than cores, every one finishes
    with its own list's values (no turn is lost or left held)."""
    rng = np.random.default_rng(6)
    lists = [[hex(int(v)) for v in rng.integers(0, 1 << 27, 40_000)] for _ in range(6)]
    want = [np.array([int(x, 16) for x in m], dtype=np.uint64) for m in lists]
    got: list = [None] * len(lists)

    def work(i):
        for _ in range(3):
            got[i] = K.parse_hex(lists[i], 27)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(lists))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    for g, w in zip(got, want):
        assert_same_array(g, w)
    assert_same_array(K.parse_hex(lists[0], 27), want[0])  # and a parse after them all


def test_parse_nested_in_parse(CY):
    """A compiled parse started while another parse of the same thread holds the GIL turn (here
    from the encode of a str subclass, which only the compiled kernel calls) does not wait for
    it forever."""
    K = CY
    inner = [hex(v) for v in range(20_000)]
    seen = []

    class Outcome(str):
        def encode(self, *args, **kwargs):
            seen.append(K.parse_hex(inner, 27))
            return str(self).encode(*args, **kwargs)

    outer = [hex(v) for v in range(10_000)] + [Outcome("0x7")] + [hex(v) for v in range(10_000)]
    result: list = []
    t = threading.Thread(target=lambda: result.append(K.parse_hex(outer, 27)), daemon=True)
    t.start()
    t.join(timeout=60)
    assert not t.is_alive(), "a nested parse waited for the outer parse's GIL turn"
    assert_same_array(result[0], np.array([int(x, 16) for x in outer], dtype=np.uint64))
    assert len(seen) == 1
    assert_same_array(seen[0], np.arange(20_000, dtype=np.uint64))


# ------------------------------------------------------------------------------------------
# merge_counts
# ------------------------------------------------------------------------------------------


@st.composite
def count_parts(draw, max_parts=6):
    width, pool = draw(width_values(min_n=1, max_n=12))
    nparts = draw(st.integers(1, max_parts))
    parts = []
    for _ in range(nparts):
        n = draw(st.integers(0, 10))
        keys = [draw(st.sampled_from(pool)) for _ in range(n)]
        counts = [draw(counts_strategy) for _ in range(n)]
        parts.append((keys, counts))
    return width, parts


@SETTINGS
@given(wp=count_parts())
def test_merge_counts_matches_python(K, wp):
    width, parts = wp
    keys_list = [ref_keys(k, width) for k, _ in parts]
    counts_list = [np.array(c, dtype=np.int64) for _, c in parts]
    want = ref_merge([p for k, c in parts for p in zip(k, c)])
    if want is None:
        with pytest.raises(OverflowError):
            K.merge_counts(keys_list, counts_list)
        return
    keys, counts = K.merge_counts(keys_list, counts_list)
    assert_same_array(keys, ref_keys([k for k, _ in want], width))
    assert_same_array(counts, np.array([c for _, c in want], dtype=np.int64))


@SETTINGS
@given(data=st.data(), wp=count_parts())
def test_merge_then_format_matches_qiskit_counts(K, data, wp):
    width, parts = wp
    parts = [(k, [c % 1000 for c in cs]) for k, cs in parts]  # no overflow here
    creg = data.draw(creg_layout(width, partition=True))  # distinct keys stay distinct
    # qiskit's way: Counter.update over dicts of hex strings, then Counts
    total: Counter = Counter()
    for k, c in parts:
        part: Counter = Counter()
        for key, n in zip(k, c):
            part[hex(key)] += n
        total.update(part)
    want = Counts(dict(total), creg_sizes=creg, memory_slots=width)
    keys, counts = K.merge_counts(
        [K.parse_hex([hex(x) for x in k], width) for k, _ in parts],
        [np.array(c, dtype=np.int64) for _, c in parts],
    )
    got = dict(zip(K.format_bits(keys, width, creg), counts.tolist()))
    assert got == dict(want)


def test_merge_counts_many_parts_u64(K):
    rng = np.random.default_rng(7)
    keys_list = [rng.integers(0, 1 << 27, 3000).astype(np.uint64) for _ in range(40)]
    keys_list += [rng.integers(0, 300, 3000).astype(np.uint64) for _ in range(40)]  # many repeats
    counts_list = [rng.integers(0, 1000, 3000) for _ in range(80)]
    keys, counts = K.merge_counts(keys_list, counts_list)
    allk = np.concatenate(keys_list)
    allc = np.concatenate(counts_list)
    uk, inv = np.unique(allk, return_inverse=True)
    assert_same_array(keys, uk)
    assert_same_array(counts, np.bincount(inv, weights=allc).astype(np.int64))


def test_merge_counts_many_distinct(K):
    """Past the cache-sized hash table (u64) and through table growth (packed rows)."""
    rng = np.random.default_rng(8)
    keys_list = [rng.integers(0, 1 << 40, 60_000).astype(np.uint64) for _ in range(4)]
    keys_list.append(keys_list[0][:1000].copy())
    counts_list = [rng.integers(0, 1 << 40, k.size) for k in keys_list]
    keys, counts = K.merge_counts(keys_list, counts_list)
    uk, inv = np.unique(np.concatenate(keys_list), return_inverse=True)
    want = np.zeros(uk.size, np.int64)
    np.add.at(want, inv, np.concatenate(counts_list))
    assert_same_array(keys, uk)
    assert_same_array(counts, want)
    rows = rng.integers(0, 256, (12_000, 11), dtype=np.uint8)
    rows[:, 0] &= 0x07  # 85 bits
    parts = [rows, rows[::-1], rows[:10]]
    keys, counts = K.merge_counts(parts, [np.ones(len(p), np.int64) for p in parts])
    uk, inv = np.unique(np.concatenate(parts), axis=0, return_inverse=True)
    assert_same_array(keys, uk)
    assert_same_array(counts, np.bincount(inv.ravel()).astype(np.int64))


def test_merge_counts_packed_sorted_without_hashing(K):
    """More distinct packed rows than the hash table takes: all rows sorted word by word, with
    duplicates and long runs of equal leading words."""
    rng = np.random.default_rng(9)
    rows = rng.integers(0, 256, (140_000, 17), dtype=np.uint8)
    rows[:, :8] = rng.integers(0, 3, (140_000, 1), dtype=np.uint8)  # 3 distinct first words
    rows[:70_000, 8:16] = 7  # and runs equal up to the last byte
    parts = [rows, rows[::3], rows[5:9]]
    counts = [rng.integers(0, 1 << 40, len(p)) for p in parts]
    keys, got = K.merge_counts(parts, counts)
    uk, inv = np.unique(np.concatenate(parts), axis=0, return_inverse=True)
    want = np.zeros(len(uk), np.int64)
    np.add.at(want, inv.ravel(), np.concatenate(counts))
    assert_same_array(keys, uk)
    assert_same_array(got, want)


def test_merge_counts_extreme_keys(K):
    top = np.uint64((1 << 64) - 1)
    keys_list = [np.array([top, 0, top, 5], np.uint64), np.array([top, 1 << 63], np.uint64)]
    counts_list = [np.array([1, 2, 3, 4]), np.array([5, 6])]
    keys, counts = K.merge_counts(keys_list, counts_list)
    assert keys.tolist() == [0, 5, 1 << 63, (1 << 64) - 1]
    assert counts.tolist() == [2, 4, 6, 9]


def test_merge_counts_packed_many(K):
    rng = np.random.default_rng(3)
    pool = rng.integers(0, 256, (500, 13), dtype=np.uint8)
    keys_list = [pool[rng.integers(0, 500, 2000)] for _ in range(10)]
    counts_list = [rng.integers(0, 50, 2000) for _ in range(10)]
    keys, counts = K.merge_counts(keys_list, counts_list)
    allk = np.concatenate(keys_list)
    uk, inv = np.unique(allk, axis=0, return_inverse=True)
    assert_same_array(keys, uk)
    assert_same_array(
        counts, np.bincount(inv.ravel(), weights=np.concatenate(counts_list)).astype(np.int64)
    )


def test_merge_counts_empty(K):
    keys, counts = K.merge_counts([np.zeros(0, np.uint64)], [np.zeros(0, np.int64)])
    assert_same_array(keys, np.zeros(0, np.uint64))
    assert_same_array(counts, np.zeros(0, np.int64))
    keys, counts = K.merge_counts(
        [np.zeros((0, 9), np.uint8), np.zeros((0, 9), np.uint8)], [[], []]
    )
    assert_same_array(keys, np.zeros((0, 9), np.uint8))
    assert_same_array(counts, np.zeros(0, np.int64))
    # an empty part next to a non-empty one; a single shot
    keys, counts = K.merge_counts(
        [np.zeros(0, np.uint64), np.array([3], np.uint64)], [np.zeros(0, np.int64), [1]]
    )
    assert keys.tolist() == [3] and counts.tolist() == [1]


def test_merge_counts_errors(K):
    u = np.array([1, 2], np.uint64)
    c = np.array([1, 1])
    with pytest.raises(ValueError, match="at least one"):
        K.merge_counts([], [])
    with pytest.raises(ValueError):
        K.merge_counts([u], [c, c])
    with pytest.raises(ValueError):
        K.merge_counts([u], [np.array([1])])
    with pytest.raises(ValueError, match="same outcome representation"):
        K.merge_counts([u, np.zeros((2, 9), np.uint8)], [c, c])
    with pytest.raises(ValueError, match="same outcome representation"):
        K.merge_counts([np.zeros((2, 9), np.uint8), np.zeros((2, 10), np.uint8)], [c, c])
    with pytest.raises(ValueError, match="non-negative"):
        K.merge_counts([u], [np.array([1, -1])])
    with pytest.raises(OverflowError):
        K.merge_counts([u, u], [np.array([INT64_MAX, 0]), np.array([1, 0])])
    with pytest.raises(TypeError):
        K.merge_counts([np.array([1.5])], [np.array([1])])


@SETTINGS
@given(
    wp=count_parts(max_parts=3),
    negate=st.booleans(),
)
def test_merge_implementations_agree(PY, CY, wp, negate):
    width, parts = wp
    keys_list = [ref_keys(k, width) for k, _ in parts]
    counts_list = [np.array(c, dtype=np.int64) for _, c in parts]
    if negate and counts_list[0].size:
        counts_list[0][0] = -1
    same_outcome(
        outcome(PY, lambda m: m.merge_counts, keys_list, counts_list),
        outcome(CY, lambda m: m.merge_counts, keys_list, counts_list),
    )


# ------------------------------------------------------------------------------------------
# format_bits
# ------------------------------------------------------------------------------------------


@SETTINGS
@given(data=st.data(), wv=width_values())
def test_format_bits_matches_qiskit(K, data, wv):
    width, values = wv
    memory_slots = data.draw(
        st.one_of(st.none(), st.just(0), st.just(width), st.integers(1, 230)), label="slots"
    )
    creg = data.draw(st.one_of(st.none(), st.just([]), creg_layout(width)), label="creg")
    got = K.format_bits(ref_keys(values, width), memory_slots, creg)
    want = [format_counts_memory(hex(v), header(memory_slots, creg)) for v in values]
    assert got == want
    assert all(type(s) is str for s in got)


def test_format_bits_examples(K):
    keys = np.array([0, 5, 255, 1 << 40], np.uint64)
    assert K.format_bits(keys, None, None) == ["0", "101", "11111111", "1" + "0" * 40]
    assert K.format_bits(keys, 4, None) == ["0000", "0101", "11111111", "1" + "0" * 40]
    # registers: the last register comes first; uncovered characters are dropped
    assert K.format_bits(keys[:3], 5, [["a", 2], ["b", 2]]) == ["00 00", "00 10", "11 11"]
    assert K.format_bits(keys[:2], 3, [["a", 1], ["b", 1], ["c", 3]]) == ["000  ", "101  "]
    # creg_sizes without memory_slots: no splitting (as qiskit)
    assert K.format_bits(keys[:2], None, [["a", 1], ["b", 2]]) == ["0", "101"]
    packed = ref_keys([(1 << 99) | 6], 100)
    assert K.format_bits(packed, 100, [["a", 50], ["b", 50]]) == [
        "1" + "0" * 49 + " " + "0" * 47 + "110"
    ]
    assert K.format_bits(np.zeros(0, np.uint64), 5, [["a", 5]]) == []
    assert K.format_bits(np.zeros((0, 20), np.uint8), 5, None) == []


def test_format_bits_many_shots_few_values(K, PY):
    """Memory of a few clbits over many shots (the compiled kernel shares one str per value)."""
    rng = np.random.default_rng(11)
    keys = rng.integers(0, 32, 20_000).astype(np.uint64)
    keys[7] = 0
    creg = [["a", 2], ["b", 3]]
    out = K.format_bits(keys, 5, creg)
    assert out == PY.format_bits(keys, 5, creg)
    assert out[:50] == [format_counts_memory(hex(v), header(5, creg)) for v in keys[:50].tolist()]
    first = out[7]
    del out
    assert sys.getrefcount(first) == 2  # no reference left behind
    out = K.format_bits(keys * np.uint64(1000), None, None)  # too many possible values to share
    assert out == [format(v, "b") for v in (keys * np.uint64(1000)).tolist()]


def test_format_bits_errors(K):
    keys = np.array([1], np.uint64)
    with pytest.raises(ValueError):
        K.format_bits(keys, -3, None)
    with pytest.raises(ValueError):
        K.format_bits(keys, 3, [["a", -1]])
    with pytest.raises(TypeError):
        K.format_bits(np.array([1.0]), 3, None)


def test_format_bits_refcounts(K):
    out = K.format_bits(np.arange(50, dtype=np.uint64), 8, [["a", 4], ["b", 4]])
    # each string is held by the list only (+ the argument of getrefcount)
    assert [sys.getrefcount(out[i]) for i in range(len(out))] == [2] * len(out)


# ------------------------------------------------------------------------------------------
# marginals
# ------------------------------------------------------------------------------------------


@st.composite
def marginal_case(draw, min_indices=0):
    width, values = draw(width_values(max_n=20))
    indices = draw(
        st.lists(
            st.integers(0, width - 1),
            unique=True,
            min_size=min(min_indices, width),
            max_size=min(width, 90),
        )
    )
    counts = [draw(counts_strategy) for _ in values]
    return width, values, indices, counts


@SETTINGS
@given(case=marginal_case())
def test_marginal_memory_matches_python(K, case):
    width, values, indices, _ = case
    got = K.marginal_memory(ref_keys(values, width), indices, width)
    assert_same_array(got, ref_keys([ref_marginal(v, indices) for v in values], len(indices)))


@SETTINGS
@given(case=marginal_case())
def test_marginal_counts_matches_python(K, case):
    width, values, indices, counts = case
    want = ref_merge([(ref_marginal(v, indices), c) for v, c in zip(values, counts)])
    args = (ref_keys(values, width), np.array(counts, dtype=np.int64), indices, width)
    if want is None:
        with pytest.raises(OverflowError):
            K.marginal_counts(*args)
        return
    keys, got = K.marginal_counts(*args)
    assert_same_array(keys, ref_keys([k for k, _ in want], len(indices)))
    assert_same_array(got, np.array([c for _, c in want], dtype=np.int64))


@SETTINGS
@given(case=marginal_case(min_indices=1))
def test_marginal_counts_matches_qiskit(K, case):
    width, values, indices, counts = case
    assume(values)
    counts = [c % 1000 + 1 for c in counts]
    total: Counter = Counter()
    for v, c in zip(values, counts):
        total[hex(v)] += c
    qcounts = Counts(dict(total), memory_slots=width)
    keys, merged = K.marginal_counts(
        K.parse_hex(list(total), width), np.array(list(total.values())), indices, width
    )
    got = dict(zip(K.format_bits(keys, len(indices), None), merged.tolist()))
    assert got == qiskit_marginal_distribution(qcounts, indices)
    if indices == sorted(indices):
        assert got == qiskit_marginal_counts(dict(qcounts), indices)


@SETTINGS
@given(case=marginal_case(min_indices=1))
def test_marginal_memory_matches_qiskit_on_padded_hex(K, case):
    width, values, indices, _ = case
    assume(values)
    memory = ["0x" + format(v, "x").zfill((width + 3) // 4) for v in values]
    got = K.marginal_memory(K.parse_hex(memory, width), indices, width)
    want = qiskit_marginal_memory(memory, indices, int_return=True)
    assert to_ints(got) == [int(v) for v in want]


def test_qiskit_marginal_memory_is_wrong_on_aer_memory(K):
    """Aer writes hex memory without leading zeros; qiskit's marginal_memory takes the width from
    the first shot and returns wrong bits; marginal_memory here is right."""
    from qiskit import QuantumCircuit
    from qiskit_aer import AerSimulator

    qc = QuantumCircuit(27, 27)
    qc.h(range(27))
    qc.measure(range(27), range(27))
    result = (
        AerSimulator(method="stabilizer")
        .run(qc, shots=4000, memory=True, seed_simulator=1234)
        .result()
    )
    memory = result.data(0)["memory"]
    assert len({len(m) for m in memory}) > 1  # variable-length hex, as Aer writes it
    indices = list(range(10))
    want = [int(m, 16) & 0x3FF for m in memory]

    theirs = [int(s, 2) for s in qiskit_marginal_memory(memory, indices)]
    wrong = sum(a != b for a, b in zip(theirs, want))
    # every shot written shorter than the first one comes out wrong (here about 1 in 8; when
    # the first shot is the short one, nearly all of them)
    assert wrong > len(memory) // 20, f"qiskit got only {wrong} of {len(memory)} shots wrong"

    keys = K.parse_hex(memory, 27)
    ours = K.marginal_memory(keys, indices, 27)
    assert_same_array(ours, np.array(want, dtype=np.uint64))
    # and formatting the parsed memory reproduces qiskit's get_memory exactly
    assert K.format_bits(keys, 27, result.results[0].header["creg_sizes"]) == result.get_memory(0)


def test_marginal_examples(K):
    keys = np.array([0b101, 0b011, 0b010], np.uint64)
    assert K.marginal_memory(keys, [2, 0], 3).tolist() == [0b11, 0b10, 0b00]
    assert K.marginal_memory(keys, [], 3).tolist() == [0, 0, 0]
    k, c = K.marginal_counts(keys, np.array([1, 2, 3]), [1], 3)
    assert k.tolist() == [0, 1] and c.tolist() == [1, 5]
    k, c = K.marginal_counts(keys, np.array([1, 2, 3]), [], 3)
    assert k.tolist() == [0] and c.tolist() == [6]
    # packed in, packed out; packed in, uint64 out
    wide = ref_keys([(1 << 150) | 1, 1 << 70], 151)
    assert K.marginal_memory(wide, [150, 0, 70], 151).tolist() == [0b011, 0b100]
    out = K.marginal_memory(wide, list(range(151)), 151)
    assert_same_array(out, wide)
    k, c = K.marginal_counts(np.zeros((0, 19), np.uint8), np.zeros(0, np.int64), [0], 151)
    assert_same_array(k, np.zeros(0, np.uint64))


def test_marginal_errors(K):
    keys = np.array([1, 2], np.uint64)
    counts = np.array([1, 1])
    for bad in ([3], [-1], [0, 0], [1, 2, 1]):
        with pytest.raises(ValueError):
            K.marginal_memory(keys, bad, 3)
        with pytest.raises(ValueError):
            K.marginal_counts(keys, counts, bad, 3)
    with pytest.raises(ValueError):
        K.marginal_memory(keys, [0], 65)  # uint64 keys but a width needing packed rows
    with pytest.raises(ValueError):
        K.marginal_memory(np.zeros((2, 9), np.uint8), [0], 80)  # 9 bytes, 80 bits needs 10
    with pytest.raises(ValueError):
        K.marginal_counts(keys, np.array([1]), [0], 3)
    with pytest.raises(ValueError, match="non-negative"):
        K.marginal_counts(keys, np.array([1, -2]), [0], 3)


# ------------------------------------------------------------------------------------------
# expectation_z
# ------------------------------------------------------------------------------------------


@SETTINGS
@given(data=st.data(), wv=width_values(min_n=1, max_n=15))
def test_expectation_z_matches_qiskit_and_exact(K, data, wv):
    width, values = wv
    counts = [data.draw(counts_strategy) for _ in values]
    assume(sum(counts) > 0)
    mask = data.draw(st.integers(0, (1 << width) - 1))
    got = K.expectation_z(ref_keys(values, width), np.array(counts, dtype=np.int64), mask)
    signed = sum(c * (-1) ** bin(v & mask).count("1") for v, c in zip(values, counts))
    assert got == float(Fraction(signed, sum(counts)))  # exact, rounded once
    total: Counter = Counter()
    for v, c in zip(values, counts):
        total[hex(v)] += c
    oper = "".join("Z" if (mask >> (width - 1 - i)) & 1 else "I" for i in range(width))
    want = sampled_expectation_value(Counts(dict(total), memory_slots=width), oper)
    assert got == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_expectation_z_examples(K):
    keys = np.array([0b00, 0b01, 0b11], np.uint64)
    counts = np.array([2, 1, 1])
    assert K.expectation_z(keys, counts, 0b01) == 0.0
    assert K.expectation_z(keys, counts, 0b10) == 0.5
    assert K.expectation_z(keys, counts, 0b11) == 0.5
    assert K.expectation_z(keys, counts, 0) == 1.0
    assert K.expectation_z(keys, counts, 1 << 80) == 1.0  # bits beyond the keys are zero
    wide = ref_keys([1 << 99, 0], 100)
    assert K.expectation_z(wide, np.array([3, 1]), 1 << 99) == -0.5
    assert K.expectation_z(wide, np.array([3, 1]), (1 << 99) | (1 << 64) | 1) == -0.5
    assert K.expectation_z(wide, np.array([3, 1]), 1 << 64) == 1.0
    huge = np.array([1 << 62, 1 << 62, 1 << 62, 1])
    assert K.expectation_z(np.array([0, 1, 2, 3], np.uint64), huge, 1) == float(
        Fraction((1 << 62) - (1 << 62) + (1 << 62) - 1, 3 * (1 << 62) + 1)
    )


def test_expectation_z_errors(K):
    keys = np.array([1, 2], np.uint64)
    with pytest.raises(ValueError, match="zero"):
        K.expectation_z(keys, np.array([0, 0]), 1)
    with pytest.raises(ValueError, match="zero"):
        K.expectation_z(np.zeros(0, np.uint64), np.zeros(0, np.int64), 1)
    with pytest.raises(ValueError):
        K.expectation_z(keys, np.array([1, -1]), 1)
    with pytest.raises(ValueError):
        K.expectation_z(keys, np.array([1, 1]), -1)
    with pytest.raises(ValueError):
        K.expectation_z(keys, np.array([1]), 1)


# ------------------------------------------------------------------------------------------
# bitarray_counts / join_shots (Sampler V2's BitArray.array)
# ------------------------------------------------------------------------------------------

bit_widths = st.one_of(st.integers(1, 130), st.sampled_from([1, 7, 8, 9, 63, 64, 65, 72, 128, 130]))


@st.composite
def bit_array_case(draw, max_shots=30):
    """(array, num_bits): uint8 of shape (*shape, shots, nbytes) with random bytes, stray bits
    above num_bits included, rows drawn from a small pool so that outcomes repeat."""
    num_bits = draw(bit_widths, label="num_bits")
    nb = nbytes(num_bits)
    shape = tuple(draw(st.lists(st.integers(0, 3), max_size=2), label="shape"))
    shots = draw(st.integers(0, max_shots), label="shots")
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="seed"))
    pool = rng.integers(0, 256, (draw(st.integers(1, 6)), nb), dtype=np.uint8)
    pool[0] = 0
    if draw(st.booleans()):
        pool[-1] = 255  # every bit set, stray ones included
    array = pool[rng.integers(0, len(pool), shape + (shots,))]
    return np.ascontiguousarray(array, dtype=np.uint8).reshape(shape + (shots, nb)), num_bits


def bitarray_dict(K, array, num_bits) -> dict:
    keys, counts = K.bitarray_counts(array, num_bits)
    return dict(zip(K.format_bits(keys, num_bits, None), counts.tolist()))


def check_counts_form(keys, counts, num_bits) -> None:
    """keys in the representation for num_bits, unique and ascending; counts int64 > 0."""
    assert counts.dtype == np.int64 and counts.ndim == 1 and (counts > 0).all()
    assert keys.shape[0] == counts.shape[0]
    if num_bits <= 64:
        assert keys.dtype == np.uint64 and keys.ndim == 1
    else:
        assert keys.dtype == np.uint8 and keys.shape[1:] == (nbytes(num_bits),)
    assert keys.flags.c_contiguous and counts.flags.c_contiguous
    ints = to_ints(keys)
    assert ints == sorted(set(ints))
    assert all(v < 1 << num_bits for v in ints)


@SETTINGS
@given(case=bit_array_case())
def test_bitarray_counts_matches_qiskit_get_counts(K, case):
    from qiskit.primitives import BitArray

    array, num_bits = case
    keys, counts = K.bitarray_counts(array, num_bits)
    check_counts_form(keys, counts, num_bits)
    assert bitarray_dict(K, array, num_bits) == BitArray(array, num_bits).get_counts()
    assert int(counts.sum()) == int(np.prod(array.shape[:-1]))


@SETTINGS
@given(case=bit_array_case(), how=st.sampled_from(["as is", "reversed", "fortran"]))
def test_bitarray_counts_implementations_agree(PY, CY, case, how):
    array, num_bits = case
    if how == "reversed" and array.ndim >= 2:
        array = array[..., ::-1, :]  # not contiguous
    elif how == "fortran":
        array = np.asfortranarray(array)
    same_outcome(
        outcome(PY, lambda m: m.bitarray_counts, array, num_bits),
        outcome(CY, lambda m: m.bitarray_counts, array, num_bits),
    )


@SETTINGS
@given(
    array=st.one_of(
        st.builds(
            lambda n, nb, dt: np.zeros((n, nb), dtype=dt),
            st.integers(0, 3),
            st.integers(0, 18),
            st.sampled_from([np.uint8, np.int8, np.uint16, np.int64, bool]),
        ),
        st.builds(lambda n: np.zeros(n, np.uint8), st.integers(0, 3)),
        st.just(np.uint8(3)),
        st.just([[1, 2]]),
    ),
    num_bits=st.integers(-3, 140),
)
def test_bitarray_counts_implementations_agree_on_bad_input(PY, CY, array, num_bits):
    same_outcome(
        outcome(PY, lambda m: m.bitarray_counts, array, num_bits),
        outcome(CY, lambda m: m.bitarray_counts, array, num_bits),
    )


def test_bitarray_counts_masks_stray_high_bits(K):
    """Bits above num_bits in a row's first byte are ignored, as BitArray.get_counts ignores
    them: rows that differ only there count as one outcome."""
    from qiskit.primitives import BitArray

    for num_bits in (1, 3, 27, 63, 65, 70, 127, 130):
        nb = nbytes(num_bits)
        rng = np.random.default_rng(num_bits)
        clean = rng.integers(0, 256, (50, nb), dtype=np.uint8)
        clean[:, 0] &= (1 << (num_bits - 8 * (nb - 1))) - 1
        dirty = clean.copy()
        if num_bits % 8:
            dirty[:, 0] |= rng.integers(0, 256, 50, dtype=np.uint8) & ~np.uint8(
                (1 << (num_bits % 8)) - 1
            )
            assert not np.array_equal(dirty, clean)
        both = np.concatenate([clean, dirty])
        keys, counts = K.bitarray_counts(both, num_bits)
        want_keys, want_counts = K.bitarray_counts(clean, num_bits)
        assert_same_array(keys, want_keys)
        assert_same_array(counts, 2 * want_counts)
        assert bitarray_dict(K, both, num_bits) == BitArray(both, num_bits).get_counts()
        assert all(v < 1 << num_bits for v in to_ints(keys))
        assert np.array_equal(dirty, both[50:])  # the input is not modified
    # 27 bits, every stray bit set: the same 3 outcomes as without them
    rows = np.array([[0xF8, 0, 0, 1], [0x00, 0, 0, 1], [0xFF, 255, 255, 255], [7, 255, 255, 255]])
    keys, counts = K.bitarray_counts(rows.astype(np.uint8), 27)
    assert keys.tolist() == [1, (1 << 27) - 1] and counts.tolist() == [2, 2]


def test_bitarray_counts_examples(K):
    rows = np.array([[0, 5], [1, 0], [0, 5], [0, 0]], np.uint8)  # 9 bits
    keys, counts = K.bitarray_counts(rows, 9)
    assert_same_array(keys, np.array([0, 5, 256], np.uint64))
    assert_same_array(counts, np.array([1, 2, 1], np.int64))
    assert bitarray_dict(K, rows, 9) == {"000000000": 1, "000000101": 2, "100000000": 1}
    # a leading shape: every row counts
    keys, counts = K.bitarray_counts(np.stack([rows[:2], rows[2:]]), 9)  # shape (2,), 2 shots
    assert keys.tolist() == [0, 5, 256] and counts.tolist() == [1, 2, 1]
    grid = np.broadcast_to(rows, (2, 3, 4, 2))  # read-only, not contiguous
    keys, counts = K.bitarray_counts(grid, 9)
    assert keys.tolist() == [0, 5, 256] and counts.tolist() == [6, 12, 6]
    # no shots; a zero-size shape
    assert_same_array(K.bitarray_counts(np.zeros((0, 4), np.uint8), 27)[0], np.zeros(0, np.uint64))
    keys, counts = K.bitarray_counts(np.zeros((3, 0, 17), np.uint8), 130)
    assert_same_array(keys, np.zeros((0, 17), np.uint8))
    assert_same_array(counts, np.zeros(0, np.int64))
    # 0 bits: every shot is the outcome 0 (formatted "0", as format_counts_memory would)
    keys, counts = K.bitarray_counts(np.zeros((2, 5, 0), np.uint8), 0)
    assert keys.tolist() == [0] and counts.tolist() == [10]
    # 64 bits: all ones (the compiled hash table's empty mark) is an outcome like any other
    top = np.full((3, 8), 255, np.uint8)
    wide = np.concatenate([top, np.zeros((2, 8), np.uint8), top[:1]])
    keys, counts = K.bitarray_counts(wide, 64)
    assert keys.tolist() == [0, (1 << 64) - 1] and counts.tolist() == [2, 4]
    # 128 bits: packed rows
    keys, counts = K.bitarray_counts(np.concatenate([top, top], axis=1), 128)
    assert to_ints(keys) == [(1 << 128) - 1] and counts.tolist() == [3]


@pytest.mark.parametrize(
    "what",
    ["random 27", "few 27", "heavy 27", "ghz 27", "one 27", "small 12", "wide 64", "mostly top 64"],
)
def test_bitarray_counts_many_shots(K, what):
    """Sizes past the compiled kernel's thresholds: its direct table, hash table and radix sort
    (with and without the sample that skips hashing), the GIL released; against numpy."""
    rng = np.random.default_rng(21)
    n = 400_000 if what == "heavy 27" else 200_000
    num_bits = {"small": 12, "wide": 64, "mostly": 64}.get(what.split()[0], 27)
    nb = nbytes(num_bits)
    if what == "random 27":
        ints = rng.integers(0, 1 << 27, n, dtype=np.uint64)
    elif what == "few 27":
        ints = rng.integers(0, 1 << 27, 1000, dtype=np.uint64)[rng.integers(0, 1000, n)]
    elif what == "heavy 27":  # the sample says hash, the hash table overflows: sorted
        ints = rng.integers(0, 1 << 27, n, dtype=np.uint64)
        ints[rng.random(n) < 0.55] = 0  # 180,000 distinct; 45% of a sample
    elif what == "ghz 27":
        ints = rng.integers(0, 2, n).astype(np.uint64) * np.uint64((1 << 27) - 1)
    elif what == "one 27":
        ints = np.full(n, 12345, np.uint64)
    elif what == "small 12":
        ints = rng.integers(0, 1 << 12, n, dtype=np.uint64)
    elif what == "wide 64":
        ints = rng.integers(0, 1 << 63, n, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        ints[::7] = np.uint64((1 << 64) - 1)
    else:  # mostly all ones, some others: the hash table's empty mark, counted aside
        ints = np.full(n, (1 << 64) - 1, np.uint64)
        ints[::100] = rng.integers(0, 50, n // 100, dtype=np.uint64)
    rows = ints.astype(">u8").view(np.uint8).reshape(n, 8)[:, 8 - nb :]
    rows = np.ascontiguousarray(rows)
    if num_bits % 8:
        rows[:, 0] |= np.uint8(0xFF << (num_bits % 8) & 0xFF)  # stray bits everywhere
    keys, counts = K.bitarray_counts(rows.reshape(4, n // 4, nb), num_bits)
    want_keys, want_counts = np.unique(ints, return_counts=True)
    assert_same_array(keys, want_keys)
    assert_same_array(counts, want_counts.astype(np.int64))


def test_bitarray_counts_wide_many_shots(K):
    """Packed rows (> 64 bits) past the hash table: merge_counts' sorting path."""
    rng = np.random.default_rng(22)
    rows = rng.integers(0, 256, (150_000, 10), dtype=np.uint8)  # 75 bits, stray bits set
    rows[::3] = rows[0]
    keys, counts = K.bitarray_counts(rows, 75)
    masked = rows.copy()
    masked[:, 0] &= 0x07
    want_keys, want_counts = np.unique(masked, axis=0, return_counts=True)
    assert_same_array(keys, want_keys)
    assert_same_array(counts, want_counts.astype(np.int64))


def test_bitarray_counts_in_two_threads(K):
    rng = np.random.default_rng(23)
    arrays = [rng.integers(0, 256, (300_000, 4), dtype=np.uint8) for _ in range(2)]
    want = [K.bitarray_counts(a, 27) for a in arrays]
    got: list = [None, None]

    def work(i):
        for _ in range(3):
            got[i] = K.bitarray_counts(arrays[i], 27)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for g, w in zip(got, want):
        assert_same_array(g[0], w[0])
        assert_same_array(g[1], w[1])


def test_bitarray_counts_errors(K):
    rows = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError, match="num_bits must be >= 0, got -1"):
        K.bitarray_counts(rows, -1)
    with pytest.raises(ValueError, match="33 bits take 5 bytes per shot, but the array has 4"):
        K.bitarray_counts(rows, 33)
    with pytest.raises(ValueError, match="24 bits take 3 bytes per shot"):
        K.bitarray_counts(rows, 24)
    with pytest.raises(ValueError, match="must be uint8, got dtype int64"):
        K.bitarray_counts(rows.astype(np.int64), 27)
    with pytest.raises(ValueError, match="must be uint8, got dtype bool"):
        K.bitarray_counts(rows.astype(bool), 27)
    with pytest.raises(ValueError, match=r"\(\*shape, shots, nbytes\), got 1 dimension"):
        K.bitarray_counts(rows[0], 27)
    with pytest.raises(TypeError):
        K.bitarray_counts(rows, 27.0)


@st.composite
def shot_parts_case(draw):
    num_bits = draw(bit_widths, label="num_bits")
    nb = nbytes(num_bits)
    shape = tuple(draw(st.lists(st.integers(0, 3), max_size=3), label="shape"))
    shots = draw(st.lists(st.integers(0, 6), min_size=1, max_size=6), label="shots")
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="seed"))
    parts = [rng.integers(0, 256, shape + (s, nb), dtype=np.uint8) for s in shots]
    return parts, num_bits


@SETTINGS
@given(case=shot_parts_case(), contiguous=st.booleans())
def test_join_shots_matches_concatenate_shots(K, case, contiguous):
    from qiskit.primitives import BitArray

    parts, num_bits = case
    if not contiguous:
        parts = [p[..., ::-1, :] for p in parts]
    want = BitArray.concatenate_shots([BitArray(p, num_bits) for p in parts])
    acc = BitArray(parts[0], num_bits)  # and as repeated concatenate_shots would join them
    for p in parts[1:]:
        acc = BitArray.concatenate_shots([acc, BitArray(p, num_bits)])
    got = K.join_shots(parts)
    assert_same_array(got, want.array)
    assert_same_array(got, acc.array)
    assert got.flags.c_contiguous and got.flags.writeable
    assert not any(np.shares_memory(got, p) for p in parts)
    assert BitArray(got, num_bits) == want


@SETTINGS
@given(case=shot_parts_case(), edit=st.integers(0, 5))
def test_join_shots_implementations_agree(PY, CY, case, edit):
    parts, _ = case
    parts = list(parts)
    last = parts[-1]
    if edit == 1:
        parts.append(last[..., :-1] if last.shape[-1] else last[..., None, :, :])
    elif edit == 2:
        parts.append(last[None])
    elif edit == 3:
        parts.append(last.astype(np.int16))
    elif edit == 4:
        parts = []
    same_outcome(
        outcome(PY, lambda m: m.join_shots, parts),
        outcome(CY, lambda m: m.join_shots, parts),
    )


def test_join_shots_examples(K):
    a = np.arange(2 * 3 * 2, dtype=np.uint8).reshape(2, 3, 2)
    b = np.full((2, 1, 2), 200, np.uint8)
    got = K.join_shots([a, b, a[:, :0]])
    assert_same_array(got, np.concatenate([a, b], axis=1))
    assert got.shape == (2, 4, 2)
    one = K.join_shots((a,))  # a tuple is a sequence too
    assert_same_array(one, a)
    assert not np.shares_memory(one, a)
    assert_same_array(K.join_shots(iter([b, b])), np.concatenate([b, b], axis=1))
    # many parts, enough shots to release the GIL
    parts = [np.full((2, 1000 + i, 4), i, np.uint8) for i in range(20)]
    assert_same_array(K.join_shots(parts), np.concatenate(parts, axis=-2))


def test_join_shots_errors(K):
    a = np.zeros((3, 5, 4), np.uint8)
    with pytest.raises(ValueError, match="at least one array"):
        K.join_shots([])
    with pytest.raises(ValueError, match="shot part 1 has 3 bytes per shot, but part 0 has 4"):
        K.join_shots([a, a[..., :3]])
    with pytest.raises(ValueError, match=r"shot part 2 has shape \(2,\), but part 0 has \(3,\)"):
        K.join_shots([a, a, a[:2]])
    with pytest.raises(ValueError, match=r"shot part 1 has shape \(\), but part 0 has \(3,\)"):
        K.join_shots([a, a[0]])
    with pytest.raises(ValueError, match="shot part 1 must be uint8, got dtype int64"):
        K.join_shots([a, a.astype(np.int64)])
    with pytest.raises(ValueError, match="shot part 0 must have shape"):
        K.join_shots([a[0, 0], a])
    with pytest.raises(TypeError, match="not one array"):
        K.join_shots(a)


# ------------------------------------------------------------------------------------------
# both implementations expose the same API
# ------------------------------------------------------------------------------------------

API = [
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


def test_same_api(PY, CY):
    for name in API:
        assert callable(getattr(PY, name)) and callable(getattr(CY, name))
        assert getattr(PY, name).__doc__ and getattr(CY, name).__doc__
    assert sorted(PY.__all__) == sorted(CY.__all__) == sorted(API)
