# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled merge kernels of qjm (twin: ``qjm._merge_py``, same functions, results and errors).

Representation of a set of classical outcomes of ``width`` bits (clbit 0 is the least significant):

* ``width <= 64``: a 1-D ``numpy.uint64`` array, one integer per outcome;
* ``width > 64``: a 2-D ``numpy.uint8`` array of shape ``(n, ceil(width / 8))``, big-endian bytes per
  row (clbit ``k`` is bit ``k % 8`` of byte ``nbytes - 1 - k // 8``), the layout of qiskit's
  ``BitArray.array``.

Counts are 1-D ``numpy.int64`` arrays of non-negative values.

``bitarray_counts`` and ``join_shots`` take Sampler V2's bit arrays as qiskit's ``BitArray.array``
holds them: uint8 of shape ``(*shape, shots, nbytes)``, each row an outcome in the packed layout
above (bits above ``num_bits`` in a row's first byte are not part of the outcome).

The numeric loops run without the GIL. Parsing collects pointers to the strings' ASCII data under
the GIL, chunk by chunk, holding a reference to each string of the chunk, and parses them without
it, so threads decoding different lists run on different cores (taking turns on the GIL, awake,
rather than sleeping on it). Merges aggregate in a cache-sized
hash table and fall back to radix sorting when the distinct keys outgrow it.
"""

import operator
import sys

import numpy as np

cimport cython
cimport numpy as cnp

cdef extern from "Python.h":
    ctypedef struct PyThreadState
    PyThreadState* PyEval_SaveThread()
    void PyEval_RestoreThread(PyThreadState* tstate) nogil
from cpython.list cimport PyList_New
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcmp, memcpy, memset

cnp.import_array()

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


cdef extern from "Python.h":
    ctypedef struct PyObject
    ctypedef unsigned int Py_UCS4
    int _IsCompactAscii "PyUnicode_IS_COMPACT_ASCII"(PyObject* o)
    int _UnicodeCheck "PyUnicode_Check"(PyObject* o)
    int _UnicodeCheckExact "PyUnicode_CheckExact"(PyObject* o)
    void* _UnicodeData "PyUnicode_DATA"(PyObject* o)
    Py_ssize_t _UnicodeLen "PyUnicode_GET_LENGTH"(PyObject* o)
    PyObject* _UnicodeNew "PyUnicode_New"(Py_ssize_t size, Py_UCS4 maxchar)
    void _Incref "Py_INCREF"(PyObject* o)
    void _Decref "Py_DECREF"(PyObject* o)
    object PySequence_Fast(object o, const char* m)
    Py_ssize_t PySequence_Fast_GET_SIZE(object o)
    PyObject** PySequence_Fast_ITEMS(object o)
    void _ListSet "PyList_SET_ITEM"(object l, Py_ssize_t i, PyObject* o)
    char* _BytesData "PyBytes_AS_STRING"(object o)
    Py_ssize_t _BytesLen "PyBytes_GET_SIZE"(object o)


cdef extern from *:
    """
    static inline int qjm_clz64(unsigned long long x) { return __builtin_clzll(x); }
    static inline int qjm_popcount64(unsigned long long x) { return __builtin_popcountll(x); }
    static inline void qjm_prefetch(const void* p) { __builtin_prefetch(p); }
    #include <string.h>
    /* 8 characters "0"/"1" (first = most significant) to a byte; 0 if any other character */
    static inline int qjm_bits8(const char* p, unsigned long long* byte) {
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        unsigned long long w;
        memcpy(&w, p, 8);
        if (((w & 0xFEFEFEFEFEFEFEFEULL) ^ 0x3030303030303030ULL) != 0) return 0;
        *byte = ((w & 0x0101010101010101ULL) * 0x8040201008040201ULL) >> 56;
        return 1;
    #else
        unsigned long long v = 0;
        int i;
        for (i = 0; i < 8; i++) {
            if ((p[i] & 0xFE) != 0x30) return 0;
            v = (v << 1) | (unsigned long long)(p[i] & 1);
        }
        *byte = v;
        return 1;
    #endif
    }
    """
    int qjm_bits8(const char* p, unsigned long long* byte) nogil
    int qjm_clz64(unsigned long long x) nogil
    int qjm_popcount64(unsigned long long x) nogil
    void qjm_prefetch(const void* p) nogil


cdef int64_t INT64_MAX = 0x7FFFFFFFFFFFFFFF
cdef uint64_t EMPTY_KEY = 0xFFFFFFFFFFFFFFFF

# hex digit values, 0xFF for an invalid character
cdef uint8_t HEXVAL[256]
# bit length of 0..15
cdef uint8_t NIBBLE_BITS[16]
# "00000000".."11111111" for every byte value, 8 characters each, most significant bit first
cdef char BYTE_CHARS[256 * 8]


cdef void _init_tables():
    cdef int i, j
    for i in range(256):
        HEXVAL[i] = 0xFF
    for i in range(10):
        HEXVAL[48 + i] = i
    for i in range(6):
        HEXVAL[97 + i] = 10 + i
        HEXVAL[65 + i] = 10 + i
    for i in range(16):
        NIBBLE_BITS[i] = 0 if i == 0 else (1 if i == 1 else (2 if i < 4 else (3 if i < 8 else 4)))
    for i in range(256):
        for j in range(8):
            BYTE_CHARS[i * 8 + j] = 49 if (i >> (7 - j)) & 1 else 48


_init_tables()


# --------------------------------------------------------------------------------------------
# validation helpers (the twin has the same ones, with the same messages)
# --------------------------------------------------------------------------------------------


def _check_width(width):
    width = operator.index(width)
    if width < 0:
        raise ValueError(f"width must be >= 0, got {width}")
    return width


def _keys_array(keys):
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


def _counts_array(counts):
    """``counts`` as a C-contiguous 1-D int64 array."""
    a = np.asarray(counts)
    if a.ndim != 1:
        raise ValueError(f"counts must be a 1-D array, got {a.ndim} dimensions")
    if a.dtype != np.int64:
        if a.size == 0:
            a = np.zeros(0, dtype=np.int64)
        elif a.dtype.kind == "u":
            if int(a.max()) > INT64_MAX:
                raise OverflowError("a count does not fit in int64")
            a = a.astype(np.int64)
        elif a.dtype.kind == "i":
            a = a.astype(np.int64)
        else:
            raise TypeError(f"counts must be integers, got dtype {a.dtype}")
    return np.ascontiguousarray(a)


def _check_pair(keys, counts):
    if keys.shape[0] != counts.shape[0]:
        raise ValueError(f"{keys.shape[0]} keys but {counts.shape[0]} counts")


def _check_keys_width(keys, width):
    if width <= 64:
        if keys.ndim != 1:
            raise ValueError(f"outcomes of {width} bits must be a 1-D uint64 array")
    else:
        nbytes = (width + 7) // 8
        if keys.ndim != 2 or keys.shape[1] != nbytes:
            raise ValueError(f"outcomes of {width} bits must be uint8 rows of {nbytes} bytes")


def _check_indices(indices, width):
    out = [operator.index(i) for i in indices]
    seen = set()
    for i in out:
        if i < 0 or i >= width:
            raise ValueError(f"index {i} is outside 0..{width - 1}")
        if i in seen:
            raise ValueError(f"index {i} is repeated")
        seen.add(i)
    return out


def _register_sizes(creg_sizes):
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


cdef inline void* _data(cnp.ndarray a) noexcept:
    return cnp.PyArray_DATA(a)


# --------------------------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------------------------

# result codes of the per-string parsers
cdef enum:
    OK = 0
    INVALID = 1
    TOO_WIDE = 2


cdef inline int _hex_u64(const char* p, Py_ssize_t n, Py_ssize_t width, uint64_t* out,
                         int* canon) noexcept nogil:
    # with canon: clears canon[0] unless the string is spelled as hex() spells its value
    # ("0x", lowercase digits, no leading zero); checked in the digit loop, at one AND per digit
    cdef Py_ssize_t i
    cdef uint64_t v = 0, lost = 0
    cdef uint8_t d, bad = 0, lower = 0x20
    cdef const char* s = p
    cdef Py_ssize_t sn = n
    if p == NULL:
        return INVALID
    if n >= 2 and p[0] == 48 and (p[1] | 0x20) == 120:  # "0x" / "0X"
        p += 2
        n -= 2
    if n == 0:
        return INVALID
    if n <= 16:
        # cannot overflow 64 bits: branch-free, invalid characters (0xFF) show in `bad`
        for i in range(n):
            d = HEXVAL[<uint8_t>p[i]]
            bad |= d
            lower &= <uint8_t>p[i]  # digits and "a".."f" have bit 0x20; "A".."F" do not
            v = (v << 4) | (d & 0x0F)
        if bad & 0xF0:
            return INVALID
    else:
        for i in range(n):
            d = HEXVAL[<uint8_t>p[i]]
            if d == 0xFF:
                return INVALID
            lower &= <uint8_t>p[i]
            lost |= v >> 60
            v = (v << 4) | d
    if lost or (width < 64 and (v >> width) != 0):
        return TOO_WIDE
    out[0] = v
    if canon != NULL and canon[0] and (
        lower == 0 or sn - n != 2 or s[1] != 120 or (n > 1 and p[0] == 48)
    ):
        canon[0] = 0
    return OK


cdef inline int _hex_packed(const char* p, Py_ssize_t n, Py_ssize_t width, Py_ssize_t nb,
                            uint8_t* row) noexcept nogil:
    # walks from the least significant digit; row must be zeroed
    cdef Py_ssize_t i, r = 0, top = 0, cells = 2 * nb
    cdef uint8_t d
    if p == NULL:
        return INVALID
    if n >= 2 and p[0] == 48 and (p[1] | 0x20) == 120:
        p += 2
        n -= 2
    if n == 0:
        return INVALID
    i = n - 1
    while i >= 0:
        d = HEXVAL[<uint8_t>p[i]]
        if d == 0xFF:
            return INVALID
        if d:
            top = 4 * r + NIBBLE_BITS[d]
            if r < cells:
                row[nb - 1 - (r >> 1)] |= <uint8_t>(d << (4 * (r & 1)))
        r += 1
        i -= 1
    if top > width:
        return TOO_WIDE
    return OK


cdef inline int _bits_u64(const char* p, Py_ssize_t n, Py_ssize_t width, uint64_t* out) noexcept nogil:
    cdef Py_ssize_t i, nd = 0
    cdef uint64_t v = 0, lost = 0
    cdef char c
    cdef uint8_t bad = 0
    cdef unsigned long long byte
    if p == NULL:
        return INVALID
    if n >= 2 and p[0] == 48 and (p[1] | 0x20) == 98:  # "0b" / "0B"
        p += 2
        n -= 2
    if 0 < n <= 64:
        # only "0"/"1" and at most 64 of them: 8 characters at a time
        i = 0
        while i + 8 <= n:
            if not qjm_bits8(p + i, &byte):
                bad = 1
                break
            v = (v << 8) | byte
            i += 8
        while i < n and not bad:
            c = p[i]
            bad |= (<uint8_t>c & 0xFE) ^ 0x30
            v = (v << 1) | <uint64_t>(c & 1)
            i += 1
        if bad == 0:
            if width < 64 and (v >> width) != 0:
                return TOO_WIDE
            out[0] = v
            return OK
        v = 0
    for i in range(n):
        c = p[i]
        if c == 48 or c == 49:
            lost |= v >> 63
            v = (v << 1) | <uint64_t>(c & 1)
            nd += 1
        elif c != 32 and c != 95:  # space, underscore
            return INVALID
    if nd == 0:
        return INVALID
    if lost or (width < 64 and (v >> width) != 0):
        return TOO_WIDE
    out[0] = v
    return OK


cdef inline int _bits_packed(const char* p, Py_ssize_t n, Py_ssize_t width, Py_ssize_t nb,
                             uint8_t* row) noexcept nogil:
    cdef Py_ssize_t i, r = 0, top = 0, cells = 8 * nb
    cdef char c
    if p == NULL:
        return INVALID
    if n >= 2 and p[0] == 48 and (p[1] | 0x20) == 98:
        p += 2
        n -= 2
    i = n - 1
    while i >= 0:
        c = p[i]
        if c == 49:
            top = r + 1
            if r < cells:
                row[nb - 1 - (r >> 3)] |= <uint8_t>(1 << (r & 7))
            r += 1
        elif c == 48:
            r += 1
        elif c != 32 and c != 95:
            return INVALID
        i -= 1
    if r == 0:
        return INVALID
    if top > width:
        return TOO_WIDE
    return OK


# The GIL turn of parsing threads. A parse hands the GIL over twice per chunk. A thread that
# blocks on the GIL is put to sleep; the releasing thread often takes the GIL back before the
# sleeper has woken (so it waits for CPython's 5 ms forced switch), and the scheduler tends to
# wake the sleeper on the releasing thread's core, so that two decoding threads end up sharing
# one core. So parsing threads take turns on the GIL through this flag: a thread holds the turn
# while it holds the GIL for a chunk, and a thread wanting the GIL back first waits for the turn
# awake (a short spin, then sched_yield, which also lets a thread sharing its core run), for at
# most TURN_WAIT_NS; then, or when the turn is free, it takes the GIL as usual. The flag only
# orders the threads; it never replaces the GIL.
cdef extern from *:
    """
    #include <sched.h>
    #include <time.h>
    static int qjm_turn = 0;
    static inline int qjm_turn_try(void) {
        int expected = 0;
        return __atomic_compare_exchange_n(&qjm_turn, &expected, 1, 0,
                                           __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
    }
    static inline int qjm_turn_busy(void) { return __atomic_load_n(&qjm_turn, __ATOMIC_RELAXED); }
    static inline void qjm_turn_release(void) { __atomic_store_n(&qjm_turn, 0, __ATOMIC_RELEASE); }
    static inline void qjm_pause(void) {
    #if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
    #elif defined(__aarch64__)
        __asm__ __volatile__("yield");
    #endif
    }
    static inline long long qjm_now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    }
    """
    int qjm_turn_try() nogil
    int qjm_turn_busy() nogil
    void qjm_turn_release() nogil
    void qjm_pause() nogil
    long long qjm_now_ns() nogil
    int sched_yield() nogil

cdef long long TURN_WAIT_NS = 2000000
cdef int TURN_SPINS = 64  # pause instructions before waiting with sched_yield


cdef bint _take_turn() noexcept nogil:
    """Wait awake for the GIL turn, at most TURN_WAIT_NS; True if this thread now holds it."""
    cdef long long until = 0
    cdef int k = 0
    while not qjm_turn_try():
        while qjm_turn_busy():
            if k < TURN_SPINS:
                qjm_pause()
            else:
                sched_yield()
                if until == 0:
                    until = qjm_now_ns() + TURN_WAIT_NS
                elif qjm_now_ns() > until:
                    return False
            k += 1
    return True


cdef Py_ssize_t PARSE_CHUNK = 16384
cdef Py_ssize_t PREFETCH = 32

# Work on fewer items than this keeps the GIL: releasing it costs little on its own, but under
# contention (the fetch threads decoding while a simulator's Python side holds the GIL) each
# release waits up to a switch interval to get it back, and a job of a thousand small
# experiments would release it thousands of times.
cdef Py_ssize_t NOGIL_MIN = 4096


cdef inline PyThreadState* _release(bint big) noexcept:
    """Release the GIL when there is enough work to be worth it (see NOGIL_MIN)."""
    if big:
        return PyEval_SaveThread()
    return NULL


cdef inline void _reacquire(PyThreadState* ts) noexcept nogil:
    if ts != NULL:
        PyEval_RestoreThread(ts)


cdef inline bint _hex_canonical(const char* p, Py_ssize_t n) noexcept nogil:
    """True when a valid hex outcome is spelled exactly as Python's ``hex()`` spells its value:
    "0x", lowercase digits, no leading zero (``"0x0"`` for zero)."""
    cdef Py_ssize_t i
    if p == NULL or n < 3 or p[0] != 48 or p[1] != 120:
        return False
    if n > 3 and p[2] == 48:
        return False
    for i in range(2, n):
        if 65 <= p[i] <= 70:  # "A".."F"
            return False
    return True


cdef int _parse_chunk(const char** ptrs, const Py_ssize_t* lens, Py_ssize_t count,
                      Py_ssize_t width, Py_ssize_t nb, bint packed, int binary,
                      uint64_t* vals, uint8_t* rows, Py_ssize_t* err,
                      PyObject** ahead, Py_ssize_t nahead, int* canon) noexcept nogil:
    """Parses count strings into vals[0:count] (or rows); returns the code of the first failure.

    With ``canon`` (hex only), clears ``canon[0]`` at the first string not spelled as ``hex()``
    would spell its value (the string was just parsed, so the check reads it from cache).

    Meanwhile it prefetches the objects of the next chunk (``ahead``: addresses only, never
    dereferenced here; a prefetch of a stale address is harmless), so that the GIL-holding
    collection of that chunk finds them in cache.
    """
    cdef Py_ssize_t i
    cdef int code = OK
    for i in range(count):
        if i < nahead:
            qjm_prefetch(ahead[i])
        if not packed:
            if binary:
                code = _bits_u64(ptrs[i], lens[i], width, vals + i)
            else:
                code = _hex_u64(ptrs[i], lens[i], width, vals + i, canon)
        elif binary:
            code = _bits_packed(ptrs[i], lens[i], width, nb, rows + i * nb)
        else:
            code = _hex_packed(ptrs[i], lens[i], width, nb, rows + i * nb)
            if code == OK and canon != NULL and canon[0] and not _hex_canonical(ptrs[i], lens[i]):
                canon[0] = 0
        if code != OK:
            err[0] = i
            return code
    err[0] = -1
    return OK


cdef object _parse(object strings, object width_obj, int binary, int* canon):
    """parse_hex / parse_bits.

    Works in chunks: under the GIL it takes a reference to each string of the chunk and collects
    pointers to its ASCII data (encoding str subclasses, marking non-ASCII strings invalid); then
    it parses the chunk without the GIL, then drops the references. The pointer arrays stay
    bounded (no allocation in proportion to the input), each chunk's strings are still in cache
    when they are parsed and released, and a list mutated by another thread meanwhile cannot free
    a string being parsed. While parsing a chunk it prefetches the next one, so the GIL is held
    mostly for cache hits (about 40% of the time). Chunks of 16384 strings measured best for two
    threads (1.7x-1.75x the throughput of one; 65536: 1.55x; 131072: 1.4x). Parsing threads
    take turns on the GIL (see _take_turn), so that they do not sleep on it between chunks.
    Errors are raised for the first offending item in order.
    """
    cdef PyThreadState* _ts = NULL
    cdef Py_ssize_t width = _check_width(width_obj)
    if isinstance(strings, (str, bytes)):
        raise TypeError("strings must be a sequence of str, not a single string")
    seq = PySequence_Fast(strings, "strings must be a sequence of str")
    cdef Py_ssize_t n = PySequence_Fast_GET_SIZE(seq)
    cdef Py_ssize_t nb = (width + 7) // 8
    cdef bint packed = width > 64
    cdef Py_ssize_t start, count, i, j, err = -1, type_err = -1, chunk = PARSE_CHUNK
    cdef int code = OK
    cdef PyObject* o
    cdef PyObject** items
    cdef const char** ptrs = NULL
    cdef Py_ssize_t* lens = NULL
    cdef PyObject** held = NULL
    cdef PyObject** ahead = NULL
    cdef Py_ssize_t nheld = 0, nahead
    cdef uint64_t* vals = NULL
    cdef uint8_t* rows = NULL
    cdef cnp.ndarray out
    if packed:
        out = np.zeros((n, nb), dtype=np.uint8)
        rows = <uint8_t*>_data(out)
    else:
        out = np.empty(n, dtype=np.uint64)
        vals = <uint64_t*>_data(out)
    if n == 0:
        return out
    if chunk > n:
        chunk = n
    ptrs = <const char**>malloc(chunk * sizeof(char*))
    lens = <Py_ssize_t*>malloc(chunk * sizeof(Py_ssize_t))
    held = <PyObject**>malloc(chunk * sizeof(PyObject*))
    ahead = <PyObject**>malloc(chunk * sizeof(PyObject*))
    cdef bint turn = qjm_turn_try()  # held with the GIL; taken back before each chunk's GIL work
    try:
        if ptrs == NULL or lens == NULL or held == NULL or ahead == NULL:
            raise MemoryError()
        start = 0
        while start < n:
            count = n - start if n - start < chunk else chunk
            if PySequence_Fast_GET_SIZE(seq) != n:
                raise RuntimeError("the sequence of strings changed size during parsing")
            items = PySequence_Fast_ITEMS(seq)
            for i in range(count):
                if i + PREFETCH < count:
                    qjm_prefetch(items[start + i + PREFETCH])  # string headers are cache misses
                o = items[start + i]
                if _UnicodeCheckExact(o) and _IsCompactAscii(o):
                    _Incref(o)
                    held[nheld] = o
                    nheld += 1
                    ptrs[i] = <const char*>_UnicodeData(o)
                    lens[i] = _UnicodeLen(o)
                elif _UnicodeCheck(o):
                    # str subclass or non-ASCII str: its ASCII bytes, else invalid
                    try:
                        b = (<object>o).encode("ascii")
                    except UnicodeEncodeError:
                        ptrs[i] = NULL
                        lens[i] = 0
                    else:
                        _Incref(<PyObject*>b)
                        held[nheld] = <PyObject*>b
                        nheld += 1
                        ptrs[i] = _BytesData(b)
                        lens[i] = _BytesLen(b)
                else:
                    type_err = start + i
                    count = i  # parse what precedes it: an earlier bad string wins
                    break
            # addresses of the next chunk's strings, for prefetching while parsing this one
            nahead = n - start - count
            if nahead > chunk:
                nahead = chunk
            if type_err >= 0 or nahead < 0:
                nahead = 0
            memcpy(ahead, items + start + count, nahead * sizeof(PyObject*))
            _ts = _release(count >= NOGIL_MIN)
            if _ts != NULL and turn:
                qjm_turn_release()
                turn = False
            code = _parse_chunk(ptrs, lens, count, width, nb, packed, binary,
                                vals + start if vals != NULL else NULL,
                                rows + start * nb if rows != NULL else NULL, &err,
                                ahead, nahead, canon)
            if _ts != NULL:
                turn = _take_turn()
            _reacquire(_ts)
            for j in range(nheld):
                if j + PREFETCH < nheld:
                    qjm_prefetch(held[j + PREFETCH])
                _Decref(held[j])
            nheld = 0
            if code != OK:
                err += start
                break
            if type_err >= 0:
                break
            start += count
    finally:
        if turn:
            qjm_turn_release()
        for j in range(nheld):
            _Decref(held[j])
        free(ptrs)
        free(lens)
        free(held)
        free(ahead)
    if code != OK:
        s = seq[err]
        if code == INVALID:
            kind = "binary" if binary else "hexadecimal"
            raise ValueError(f"invalid {kind} outcome {s!r}")
        raise ValueError(f"outcome {s!r} does not fit in {width} bits")
    if type_err >= 0:
        raise TypeError(
            f"outcomes must be str, got {type(seq[type_err]).__name__} at index {type_err}"
        )
    return out


def parse_hex(strings, width) -> np.ndarray:
    """Parse hexadecimal outcome strings ("0x1f", "1F", "0x001f") into the outcome representation.

    parse_hex(strings: Sequence[str], width: int) -> np.ndarray

    Raises ValueError naming the first offending string (invalid character, no digits, or a
    value wider than ``width`` bits) and TypeError for an item that is not a str, whichever
    comes first.
    """
    return _parse(strings, width, 0, NULL)


def parse_hex_canonical(strings, width) -> tuple:
    """Parse like :func:`parse_hex`; also say whether every string is spelled exactly as
    Python's ``hex()`` spells its value ("0x", lowercase, no leading zeros).

    parse_hex_canonical(strings: Sequence[str], width: int) -> tuple[np.ndarray, bool]

    When it is True, ``hex()`` of the outcomes gives the strings back, so they need not be kept.
    Raises as :func:`parse_hex` does.
    """
    cdef int canon = 1
    out = _parse(strings, width, 0, &canon)
    return out, bool(canon)


def parse_bits(strings, width) -> np.ndarray:
    """Parse binary outcome strings ("0101", "0b101", "01 10", "01_10") into the representation.

    parse_bits(strings: Sequence[str], width: int) -> np.ndarray

    Spaces and underscores after the optional "0b" prefix are ignored. Raises ValueError naming
    the first offending string (invalid character, no digits, or a value wider than ``width``
    bits) and TypeError for an item that is not a str, whichever comes first.
    """
    return _parse(strings, width, 1, NULL)


# --------------------------------------------------------------------------------------------
# merging: uint64 keys
# --------------------------------------------------------------------------------------------

ctypedef struct Pair:
    uint64_t key
    int64_t count


cdef inline Py_ssize_t _table_size(Py_ssize_t n) noexcept nogil:
    """Slots of a hash table for up to ``n`` keys: a power of two from 1024, at least 2n, at
    most what HASH_MAX_DISTINCT keys need (past that the callers sort instead)."""
    cdef Py_ssize_t cap = 1024
    while cap < 4 * HASH_MAX_DISTINCT and cap < 2 * n:
        cap *= 2
    return cap


cdef Pair* _empty_table(Py_ssize_t cap) noexcept nogil:
    """A hash table of ``cap`` empty slots (EMPTY_KEY, count 0), or NULL when out of memory."""
    cdef Py_ssize_t i
    cdef Pair* table = <Pair*>malloc(cap * sizeof(Pair))
    if table != NULL:
        for i in range(cap):
            table[i].key = EMPTY_KEY
            table[i].count = 0
    return table

# merge error codes
cdef enum:
    MERGE_OK = 0
    MERGE_NEGATIVE = 1
    MERGE_OVERFLOW = 2
    MERGE_NOMEM = 3

# the hash table is used while the number of distinct keys stays below this (table in cache);
# past it all pairs are radix sorted instead
cdef Py_ssize_t HASH_MAX_DISTINCT = 1 << 16


cdef inline uint64_t _mix(uint64_t k) noexcept nogil:
    k ^= k >> 33
    k *= <uint64_t>0xff51afd7ed558ccd
    k ^= k >> 33
    k *= <uint64_t>0xc4ceb9fe1a85ec53
    k ^= k >> 33
    return k


cdef inline int _add(int64_t* acc, int64_t c) noexcept nogil:
    # both non-negative
    if acc[0] > INT64_MAX - c:
        return MERGE_OVERFLOW
    acc[0] += c
    return MERGE_OK


cdef Pair* _radix_sort_pairs(Pair* a, Pair* tmp, Py_ssize_t n) noexcept nogil:
    """LSD radix sort by key, 8 bits per pass, skipping bytes that are the same in every key.

    Returns the buffer (a or tmp) that holds the sorted pairs; stable.
    """
    cdef Py_ssize_t hist[8][256]
    cdef Py_ssize_t i, s, t
    cdef int b, d
    cdef uint64_t k
    cdef Pair* src = a
    cdef Pair* dst = tmp
    cdef Pair* sw
    if n <= 1:
        return a
    memset(hist, 0, sizeof(hist))
    for i in range(n):
        k = a[i].key
        hist[0][k & 0xFF] += 1
        hist[1][(k >> 8) & 0xFF] += 1
        hist[2][(k >> 16) & 0xFF] += 1
        hist[3][(k >> 24) & 0xFF] += 1
        hist[4][(k >> 32) & 0xFF] += 1
        hist[5][(k >> 40) & 0xFF] += 1
        hist[6][(k >> 48) & 0xFF] += 1
        hist[7][k >> 56] += 1
    for b in range(8):
        if hist[b][(a[0].key >> (8 * b)) & 0xFF] == n:
            continue  # every key has the same byte here
        s = 0
        for d in range(256):
            t = hist[b][d]
            hist[b][d] = s
            s += t
        for i in range(n):
            d = (src[i].key >> (8 * b)) & 0xFF
            dst[hist[b][d]] = src[i]
            hist[b][d] += 1
        sw = src
        src = dst
        dst = sw
    return src


cdef int _reduce_sorted(Pair* a, Py_ssize_t n, Py_ssize_t* nunique) noexcept nogil:
    """Sums the counts of equal keys of sorted pairs in place; first nunique pairs hold the result."""
    cdef Py_ssize_t i, u = 0
    if n == 0:
        nunique[0] = 0
        return MERGE_OK
    for i in range(1, n):
        if a[i].key == a[u].key:
            if _add(&a[u].count, a[i].count):
                return MERGE_OVERFLOW
        else:
            u += 1
            a[u] = a[i]
    nunique[0] = u + 1
    return MERGE_OK


cdef int _merge_u64(const uint64_t** kp, const int64_t** cp, const Py_ssize_t* lens,
                    Py_ssize_t nparts, Pair** result, Py_ssize_t* nresult) noexcept nogil:
    """Merges the parts into malloc'ed unique sorted pairs (*result, freed by the caller)."""
    cdef Py_ssize_t total = 0, p, i, u = 0, cap, mask, slot, j, pos
    cdef Pair* table = NULL
    cdef Pair* a = NULL
    cdef Pair* tmp = NULL
    cdef Pair* sorted_ = NULL
    cdef uint64_t k
    cdef int64_t c, max_count = 0
    cdef bint has_max = False
    cdef int rc = MERGE_OK
    cdef bint hashed = True
    result[0] = NULL
    nresult[0] = 0
    for p in range(nparts):
        total += lens[p]
        for i in range(lens[p]):
            if cp[p][i] < 0:
                return MERGE_NEGATIVE
    if total == 0:
        return MERGE_OK

    # 1. hash aggregation while the distinct keys fit in a cache-sized table
    cap = _table_size(total)
    table = _empty_table(cap)
    if table == NULL:
        return MERGE_NOMEM
    mask = cap - 1
    for p in range(nparts):
        if not hashed:
            break
        for i in range(lens[p]):
            k = kp[p][i]
            c = cp[p][i]
            if k == EMPTY_KEY:
                has_max = True
                if max_count > INT64_MAX - c:
                    free(table)
                    return MERGE_OVERFLOW
                max_count += c
                continue
            slot = _mix(k) & mask
            while table[slot].key != k and table[slot].key != EMPTY_KEY:
                slot = (slot + 1) & mask
            if table[slot].key == EMPTY_KEY:
                if 2 * (u + 1) > cap:  # too many distinct keys: give up hashing
                    hashed = False
                    break
                table[slot].key = k
                table[slot].count = c
                u += 1
            else:
                if table[slot].count > INT64_MAX - c:
                    free(table)
                    return MERGE_OVERFLOW
                table[slot].count += c
    if hashed:
        j = u + (1 if has_max else 0)
        a = <Pair*>malloc(j * sizeof(Pair))
        tmp = <Pair*>malloc(j * sizeof(Pair))
        if a == NULL or tmp == NULL:
            free(table)
            free(a)
            free(tmp)
            return MERGE_NOMEM
        pos = 0
        for i in range(cap):
            if table[i].key != EMPTY_KEY:
                a[pos] = table[i]
                pos += 1
        if has_max:
            a[pos].key = EMPTY_KEY
            a[pos].count = max_count
            pos += 1
        free(table)
        sorted_ = _radix_sort_pairs(a, tmp, pos)
        if sorted_ == a:
            free(tmp)
        else:
            free(a)
        result[0] = sorted_
        nresult[0] = pos
        return MERGE_OK

    # 2. radix sort of every pair, then one pass summing equal keys
    free(table)
    a = <Pair*>malloc(total * sizeof(Pair))
    tmp = <Pair*>malloc(total * sizeof(Pair))
    if a == NULL or tmp == NULL:
        free(a)
        free(tmp)
        return MERGE_NOMEM
    pos = 0
    for p in range(nparts):
        for i in range(lens[p]):
            a[pos].key = kp[p][i]
            a[pos].count = cp[p][i]
            pos += 1
    sorted_ = _radix_sort_pairs(a, tmp, total)
    if sorted_ == a:
        free(tmp)
    else:
        free(a)
    rc = _reduce_sorted(sorted_, total, nresult)
    if rc != MERGE_OK:
        free(sorted_)
        nresult[0] = 0
        return rc
    result[0] = sorted_
    return MERGE_OK


# --------------------------------------------------------------------------------------------
# merging: packed rows
# --------------------------------------------------------------------------------------------

ctypedef struct Slot:
    uint64_t hash
    Py_ssize_t idx      # index into the unique rows, -1 when empty


cdef inline uint64_t _hash_row(const uint8_t* row, Py_ssize_t nb) noexcept nogil:
    cdef uint64_t h = <uint64_t>0x9E3779B97F4A7C15 ^ <uint64_t>nb, w
    cdef Py_ssize_t i = 0
    while i + 8 <= nb:
        memcpy(&w, row + i, 8)
        h = _mix(h ^ w) 
        i += 8
    if i < nb:
        w = 0
        memcpy(&w, row + i, nb - i)
        h = _mix(h ^ w ^ (<uint64_t>(nb - i) << 56))
    return _mix(h)


cdef inline uint64_t _row_word(const uint8_t* row, Py_ssize_t w, Py_ssize_t nb) noexcept nogil:
    """Bytes 8w..8w+7 of the row as a big-endian integer (zero past the row's end)."""
    cdef uint64_t x = 0
    cdef Py_ssize_t i
    for i in range(8 * w, 8 * w + 8):
        x = (x << 8) | (row[i] if i < nb else 0)
    return x


cdef void _sort_rows(Pair* a, Pair* tmp, Py_ssize_t n, const uint8_t** rows, Py_ssize_t nb,
                     Py_ssize_t w) noexcept nogil:
    """Sorts rows (index in .count, word w in .key) lexicographically, word by word; equal rows
    end up next to each other."""
    cdef Pair* srt
    cdef Pair x
    cdef Py_ssize_t i, j, s, e
    if n <= 1:
        return
    if n <= 32:
        for i in range(1, n):  # insertion sort
            x = a[i]
            j = i - 1
            while j >= 0 and a[j].key > x.key:
                a[j + 1] = a[j]
                j -= 1
            a[j + 1] = x
    else:
        srt = _radix_sort_pairs(a, tmp, n)
        if srt != a:
            memcpy(a, srt, n * sizeof(Pair))
    if 8 * (w + 1) >= nb:
        return  # that was the last word: distinct rows are now in order
    s = 0
    while s < n:
        e = s + 1
        while e < n and a[e].key == a[s].key:
            e += 1
        if e - s > 1:
            # a run of equal rows (duplicates not merged by hashing) needs no further sorting
            i = s + 1
            while i < e and memcmp(rows[a[i].count], rows[a[s].count], nb) == 0:
                i += 1
            if i < e:
                for i in range(s, e):
                    a[i].key = _row_word(rows[a[i].count], w + 1, nb)
                _sort_rows(a + s, tmp + s, e - s, rows, nb, w + 1)
        s = e


cdef int _merge_rows(const uint8_t** kp, const int64_t** cp, const Py_ssize_t* lens,
                     Py_ssize_t nparts, Py_ssize_t nb, const uint8_t*** rows_out,
                     int64_t** counts_out, Py_ssize_t* nresult) noexcept nogil:
    """Merges packed rows into malloc'ed arrays (freed by the caller) of the distinct rows in
    ascending order (pointers into the input) and their summed counts.

    While the distinct rows fit a cache-sized hash table they are aggregated there and only they
    are sorted; past that every row is sorted (word by word) and equal neighbours are summed.
    """
    cdef Py_ssize_t total = 0, p, i, u = 0, cap = 1024, mask, slot, j, pos
    cdef Slot* table = NULL
    cdef const uint8_t** urows = NULL
    cdef int64_t* ucounts = NULL
    cdef const uint8_t** srows = NULL
    cdef int64_t* scounts = NULL
    cdef Pair* pairs = NULL
    cdef Pair* ptmp = NULL
    cdef uint64_t h
    cdef int64_t c
    cdef const uint8_t* row
    cdef int rc = MERGE_OK
    cdef bint hashed = True
    rows_out[0] = NULL
    counts_out[0] = NULL
    nresult[0] = 0
    for p in range(nparts):
        total += lens[p]
        for i in range(lens[p]):
            if cp[p][i] < 0:
                return MERGE_NEGATIVE
    if total == 0:
        return MERGE_OK
    # rows (pointers) and counts of the parts, in input order; then the hash aggregation
    urows = <const uint8_t**>malloc(total * sizeof(uint8_t*))
    ucounts = <int64_t*>malloc(total * sizeof(int64_t))
    cap = _table_size(total)
    table = <Slot*>malloc(cap * sizeof(Slot))
    if urows == NULL or ucounts == NULL or table == NULL:
        rc = MERGE_NOMEM
    else:
        for i in range(cap):
            table[i].idx = -1
        mask = cap - 1
        for p in range(nparts):
            if not hashed or rc != MERGE_OK:
                break
            for i in range(lens[p]):
                row = kp[p] + i * nb
                c = cp[p][i]
                h = _hash_row(row, nb)
                slot = h & mask
                while table[slot].idx >= 0:
                    if table[slot].hash == h and memcmp(urows[table[slot].idx], row, nb) == 0:
                        break
                    slot = (slot + 1) & mask
                if table[slot].idx >= 0:
                    j = table[slot].idx
                    if ucounts[j] > INT64_MAX - c:
                        rc = MERGE_OVERFLOW
                        break
                    ucounts[j] += c
                    continue
                if 2 * (u + 1) > cap:  # too many distinct rows: sort them all instead
                    hashed = False
                    break
                table[slot].hash = h
                table[slot].idx = u
                urows[u] = row
                ucounts[u] = c
                u += 1
    free(table)
    if rc == MERGE_OK and not hashed:
        u = 0
        for p in range(nparts):
            for i in range(lens[p]):
                urows[u] = kp[p] + i * nb
                ucounts[u] = cp[p][i]
                u += 1
    if rc == MERGE_OK:
        # sort by the first 8 bytes, then runs of equal words by the next 8, and so on
        pairs = <Pair*>malloc(u * sizeof(Pair))
        ptmp = <Pair*>malloc(u * sizeof(Pair))
        srows = <const uint8_t**>malloc(u * sizeof(uint8_t*))
        scounts = <int64_t*>malloc(u * sizeof(int64_t))
        if pairs == NULL or ptmp == NULL or srows == NULL or scounts == NULL:
            rc = MERGE_NOMEM
        else:
            for i in range(u):
                pairs[i].key = _row_word(urows[i], 0, nb)
                pairs[i].count = i  # the row's index rides in the count field
            _sort_rows(pairs, ptmp, u, urows, nb, 0)
            # gather in order; equal rows (only when not hashed) are neighbours: sum them
            pos = -1
            for i in range(u):
                j = <Py_ssize_t>pairs[i].count
                if (pos >= 0 and not hashed and pairs[i].key == pairs[i - 1].key
                        and memcmp(srows[pos], urows[j], nb) == 0):
                    if scounts[pos] > INT64_MAX - ucounts[j]:
                        rc = MERGE_OVERFLOW
                        break
                    scounts[pos] += ucounts[j]
                else:
                    pos += 1
                    srows[pos] = urows[j]
                    scounts[pos] = ucounts[j]
            u = pos + 1
    free(pairs)
    free(ptmp)
    free(urows)
    free(ucounts)
    if rc != MERGE_OK:
        free(srows)
        free(scounts)
        return rc
    rows_out[0] = srows
    counts_out[0] = scounts
    nresult[0] = u
    return MERGE_OK


cdef object _raise_merge(int rc):
    if rc == MERGE_NEGATIVE:
        raise ValueError("counts must be non-negative")
    if rc == MERGE_OVERFLOW:
        raise OverflowError("a merged count does not fit in int64")
    if rc == MERGE_NOMEM:
        raise MemoryError()
    return None


cdef tuple _merge_arrays(list ks, list cs):
    """Merges validated parts (all 1-D uint64, or all 2-D uint8 with the same width)."""
    cdef PyThreadState* _ts = NULL
    cdef Py_ssize_t nparts = len(ks), p, i, nres = 0, nb = 0, total = 0
    cdef bint packed = (<cnp.ndarray>ks[0]).ndim == 2
    cdef const void** kp = <const void**>malloc(nparts * sizeof(void*))
    cdef const int64_t** cp = <const int64_t**>malloc(nparts * sizeof(int64_t*))
    cdef Py_ssize_t* lens = <Py_ssize_t*>malloc(nparts * sizeof(Py_ssize_t))
    cdef Pair* pairs = NULL
    cdef const uint8_t** urows = NULL
    cdef int64_t* ucounts = NULL
    cdef int rc = MERGE_OK
    cdef cnp.ndarray out_k, out_c
    cdef uint64_t* okp
    cdef uint8_t* orp
    cdef int64_t* ocp
    try:
        if kp == NULL or cp == NULL or lens == NULL:
            raise MemoryError()
        if packed:
            nb = (<cnp.ndarray>ks[0]).shape[1]
        for p in range(nparts):
            kp[p] = _data(<cnp.ndarray>ks[p])
            cp[p] = <const int64_t*>_data(<cnp.ndarray>cs[p])
            lens[p] = (<cnp.ndarray>ks[p]).shape[0]
            total += lens[p]
        if not packed:
            _ts = _release(total >= NOGIL_MIN)
            rc = _merge_u64(<const uint64_t**>kp, cp, lens, nparts, &pairs, &nres)
            _reacquire(_ts)
            _raise_merge(rc)
            out_k = np.empty(nres, dtype=np.uint64)
            out_c = np.empty(nres, dtype=np.int64)
            okp = <uint64_t*>_data(out_k)
            ocp = <int64_t*>_data(out_c)
            _ts = _release(nres >= NOGIL_MIN)
            for i in range(nres):
                okp[i] = pairs[i].key
                ocp[i] = pairs[i].count
            _reacquire(_ts)
        else:
            _ts = _release(total >= NOGIL_MIN)
            rc = _merge_rows(<const uint8_t**>kp, cp, lens, nparts, nb, &urows, &ucounts,
                             &nres)
            _reacquire(_ts)
            _raise_merge(rc)
            out_k = np.empty((nres, nb), dtype=np.uint8)
            out_c = np.empty(nres, dtype=np.int64)
            orp = <uint8_t*>_data(out_k)
            ocp = <int64_t*>_data(out_c)
            _ts = _release(nres >= NOGIL_MIN)
            for i in range(nres):
                memcpy(orp + i * nb, urows[i], nb)
                ocp[i] = ucounts[i]
            _reacquire(_ts)
        return out_k, out_c
    finally:
        free(kp)
        free(cp)
        free(lens)
        free(pairs)
        free(urows)
        free(ucounts)


def merge_counts(keys_list, counts_list) -> tuple:
    """Join (keys, counts) parts into unique keys in ascending order with summed counts.

    merge_counts(keys_list: Sequence[np.ndarray], counts_list: Sequence[np.ndarray])
        -> tuple[np.ndarray, np.ndarray]

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
    return _merge_arrays(ks, cs)


# --------------------------------------------------------------------------------------------
# bit arrays: qiskit's BitArray.array (Sampler V2 results)
# --------------------------------------------------------------------------------------------


cdef extern from *:
    """
    #include <stdint.h>
    static inline int qjm_ctz64(unsigned long long x) { return __builtin_ctzll(x); }
    /* Rows of nb <= 8 big-endian bytes to integers, masked; also their OR, AND and maximum.
       One loop per row width, so that the compiler unrolls the loop over the bytes. */
    #define QJM_ROWS_CASE(NB)                                                   \\
        case NB:                                                                \\
            for (i = 0; i < n; i++) {                                           \\
                const uint8_t* p = rows + i * (NB);                             \\
                uint64_t v = 0;                                                 \\
                int j;                                                          \\
                for (j = 0; j < (NB); j++) v = (v << 8) | p[j];                 \\
                v &= mask;                                                      \\
                out[i] = v;                                                     \\
                o |= v;                                                         \\
                a &= v;                                                         \\
                if (v > m) m = v;                                               \\
            }                                                                   \\
            break;
    static void qjm_rows_u64(const uint8_t* rows, Py_ssize_t n, int nb, uint64_t mask,
                             uint64_t* out, uint64_t* or_, uint64_t* and_, uint64_t* max_) {
        Py_ssize_t i;
        uint64_t o = 0, a = ~(uint64_t)0, m = 0;
        switch (nb) {
            QJM_ROWS_CASE(0)
            QJM_ROWS_CASE(1)
            QJM_ROWS_CASE(2)
            QJM_ROWS_CASE(3)
            QJM_ROWS_CASE(4)
            QJM_ROWS_CASE(5)
            QJM_ROWS_CASE(6)
            QJM_ROWS_CASE(7)
            QJM_ROWS_CASE(8)
        }
        *or_ = o;
        *and_ = a;
        *max_ = m;
    }
    """
    int qjm_ctz64(unsigned long long x) nogil
    void qjm_rows_u64(const uint8_t* rows, Py_ssize_t n, int nb, uint64_t mask, uint64_t* out,
                      uint64_t* or_, uint64_t* and_, uint64_t* max_) nogil


# counting reads keys below this bound straight into a table of one count per possible value
# (when the table is also no larger than about twice the number of shots)
cdef uint64_t DIRECT_MAX = 1 << 20
# bits per digit of the radix sort of bare keys (a 2048-entry histogram per pass stays in L1)
cdef int RADIX_BITS = 11


cdef uint64_t* _radix_sort_u64(uint64_t* a, uint64_t* tmp, Py_ssize_t n, int lo,
                               int span) noexcept nogil:
    """LSD radix sort of keys that differ only in bits lo..lo+span-1, in passes of at most
    RADIX_BITS bits (27 varying bits: 3 passes of 9); a pass whose digit is the same in every
    key is skipped. Returns the buffer (a or tmp) holding the sorted keys, or NULL when out of
    memory."""
    cdef int passes = (span + RADIX_BITS - 1) // RADIX_BITS
    cdef int bits = (span + passes - 1) // passes
    cdef Py_ssize_t size = (<Py_ssize_t>1) << bits, i, s, t
    cdef uint64_t dmask = (<uint64_t>1 << bits) - 1
    cdef Py_ssize_t* hist = <Py_ssize_t*>calloc(passes * size, sizeof(Py_ssize_t))
    cdef Py_ssize_t* h
    cdef uint64_t* src = a
    cdef uint64_t* dst = tmp
    cdef uint64_t* sw
    cdef uint64_t k
    cdef int p, shift
    if hist == NULL:
        return NULL
    for i in range(n):
        k = a[i] >> lo
        for p in range(passes):
            hist[p * size + ((k >> (p * bits)) & dmask)] += 1
    for p in range(passes):
        h = hist + p * size
        shift = lo + p * bits
        if h[(a[0] >> shift) & dmask] == n:
            continue  # every key has the same digit here
        s = 0
        for i in range(size):
            t = h[i]
            h[i] = s
            s += t
        for i in range(n):
            k = src[i]
            t = (k >> shift) & dmask
            dst[h[t]] = k
            h[t] += 1
        sw = src
        src = dst
        dst = sw
    free(hist)
    return src


# counting samples this many keys, spread over the shots, to tell whether they are mostly distinct
cdef Py_ssize_t SAMPLE = 4096
# hashing gives up (and sorts) past HASH_MAX_DISTINCT distinct keys: code of that outcome
cdef enum:
    COUNT_TOO_MANY = -1


cdef bint _mostly_distinct(const uint64_t* keys, Py_ssize_t n) noexcept nogil:
    """True when over half of SAMPLE keys spread evenly over the n (n >= 16 SAMPLE) are distinct:
    then the distinct keys would most likely outgrow the hash table, and sorting them at once
    saves filling it first (a uniformly random 27-bit outcome over a million shots)."""
    cdef Py_ssize_t cap = 2 * SAMPLE, i, slot, u = 0, step
    cdef uint64_t k
    cdef uint64_t* table
    if n < 16 * SAMPLE:
        return False
    table = <uint64_t*>malloc(cap * sizeof(uint64_t))
    if table == NULL:
        return False
    memset(table, 0xFF, cap * sizeof(uint64_t))  # EMPTY_KEY everywhere
    step = n // SAMPLE
    for i in range(SAMPLE):
        k = keys[i * step]
        if k == EMPTY_KEY:
            continue
        slot = _mix(k) & (cap - 1)
        while table[slot] != k and table[slot] != EMPTY_KEY:
            slot = (slot + 1) & (cap - 1)
        if table[slot] == EMPTY_KEY:
            table[slot] = k
            u += 1
    free(table)
    return 2 * u > SAMPLE


cdef int _count_hashed(uint64_t* keys, int64_t* c, Py_ssize_t n,
                       Py_ssize_t* nresult) noexcept nogil:
    """Counts the n keys in a hash table (as merge_counts does) into keys[:u], c[:u], ascending;
    COUNT_TOO_MANY (keys untouched) when there are more distinct keys than it takes."""
    cdef Py_ssize_t i, u = 0, cap = 1024, mask, slot, pos
    cdef uint64_t k
    cdef int64_t max_count = 0
    cdef Pair* table
    cdef Pair* a
    cdef Pair* srt
    cap = _table_size(n)
    table = _empty_table(cap)
    if table == NULL:
        return MERGE_NOMEM
    mask = cap - 1
    for i in range(n):
        k = keys[i]
        if k == EMPTY_KEY:  # all 64 bits set: the table's empty mark, counted aside
            max_count += 1
            continue
        slot = _mix(k) & mask
        while table[slot].key != k and table[slot].key != EMPTY_KEY:
            slot = (slot + 1) & mask
        if table[slot].key == EMPTY_KEY:
            if 2 * (u + 1) > cap:  # too many distinct keys
                free(table)
                return COUNT_TOO_MANY
            table[slot].key = k
            table[slot].count = 1
            u += 1
        else:
            table[slot].count += 1
    a = <Pair*>malloc(2 * (u + 1) * sizeof(Pair))
    if a == NULL:
        free(table)
        return MERGE_NOMEM
    pos = 0
    for i in range(cap):
        if table[i].key != EMPTY_KEY:
            a[pos] = table[i]
            pos += 1
    free(table)
    if max_count:
        a[pos].key = EMPTY_KEY
        a[pos].count = max_count
        pos += 1
    srt = _radix_sort_pairs(a, a + u + 1, pos)
    for i in range(pos):
        keys[i] = srt[i].key
        c[i] = srt[i].count
    free(a)
    nresult[0] = pos
    return MERGE_OK


cdef int _count_u64(uint64_t* keys, uint64_t* tmp, Py_ssize_t n, uint64_t kor, uint64_t kand,
                    uint64_t kmax, uint64_t** ukeys, int64_t** ucounts,
                    Py_ssize_t* nresult) noexcept nogil:
    """Counts the n keys (their OR, AND and maximum given). On return ``*ukeys`` holds the
    distinct keys in ascending order and ``*ucounts`` how often each occurs: they are ``keys``
    and ``tmp`` (as int64), one each, both overwritten.

    Small keys are counted in a direct table; then, while the distinct keys fit a cache-sized
    hash table (as merge_counts), there; past that the keys are radix sorted (only the bits in
    which they differ) and equal neighbours counted.
    """
    cdef Py_ssize_t i, j, u = 0
    cdef uint64_t k, diff = kor ^ kand
    cdef uint64_t* s
    cdef int64_t* c
    cdef int64_t* table64
    cdef int lo, rc
    ukeys[0] = keys
    ucounts[0] = <int64_t*>tmp
    nresult[0] = 0
    if n == 0:
        return MERGE_OK
    c = <int64_t*>tmp
    if diff == 0:  # one outcome only
        keys[0] = kand
        c[0] = n
        nresult[0] = 1
        return MERGE_OK

    # 1. a direct table: one count per possible value
    if kmax < DIRECT_MAX and <Py_ssize_t>kmax < 2 * n + 1024:
        table64 = <int64_t*>calloc(<Py_ssize_t>kmax + 1, sizeof(int64_t))
        if table64 == NULL:
            return MERGE_NOMEM
        for i in range(n):
            table64[keys[i]] += 1
        for i in range(<Py_ssize_t>kmax + 1):
            if table64[i]:
                keys[u] = <uint64_t>i
                c[u] = table64[i]
                u += 1
        free(table64)
        nresult[0] = u
        return MERGE_OK

    # 2. a hash table while the distinct keys fit in cache, unless a sample says they will not
    if not _mostly_distinct(keys, n):
        rc = _count_hashed(keys, c, n, nresult)
        if rc != COUNT_TOO_MANY:
            return rc

    # 3. radix sort of the keys, then one pass counting runs of equal keys
    lo = qjm_ctz64(diff)
    s = _radix_sort_u64(keys, tmp, n, lo, 64 - qjm_clz64(diff) - lo)
    if s == NULL:
        return MERGE_NOMEM
    c = <int64_t*>(tmp if s == keys else keys)
    i = 0
    u = 0
    while i < n:
        k = s[i]
        j = i + 1
        while j < n and s[j] == k:
            j += 1
        s[u] = k  # u <= i: nothing unread is overwritten
        c[u] = j - i
        u += 1
        i = j
    ukeys[0] = s
    ucounts[0] = c
    nresult[0] = u
    return MERGE_OK


def _check_num_bits(num_bits):
    num_bits = operator.index(num_bits)
    if num_bits < 0:
        raise ValueError(f"num_bits must be >= 0, got {num_bits}")
    return num_bits


@cython.wraparound(True)  # negative indices below: shape[-1] is nbytes
def _bit_rows(array, num_bits):
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


@cython.wraparound(True)  # negative indices below: shape[-1] is nbytes
def _shot_parts(arrays):
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


def bitarray_counts(array, num_bits) -> tuple:
    """Histogram of the outcomes of a packed-bit array as qiskit's ``BitArray`` holds them.

    bitarray_counts(array: np.ndarray, num_bits: int) -> tuple[np.ndarray, np.ndarray]

    ``array`` is uint8 of shape ``(*shape, shots, nbytes)`` with ``nbytes == ceil(num_bits / 8)``,
    big-endian rows (``BitArray.array``); every row counts, over all of ``shape``. Bits above
    ``num_bits`` in a row's first byte are ignored, as ``BitArray.get_counts`` ignores them.
    Returns (keys, counts): the distinct outcomes in ascending order in the representation for
    ``num_bits`` bits, and how often each occurs (int64), so that
    ``dict(zip(format_bits(keys, num_bits, None), counts.tolist()))`` equals
    ``BitArray(array, num_bits).get_counts()``. Raises ValueError for a negative ``num_bits``,
    an array that is not uint8, has fewer than 2 dimensions or rows of another size.
    """
    cdef PyThreadState* _ts = NULL
    num_bits = _check_num_bits(num_bits)
    cdef cnp.ndarray a = _bit_rows(array, num_bits)
    cdef Py_ssize_t nbits = num_bits  # fits: the rows have ceil(num_bits / 8) bytes
    cdef Py_ssize_t n = a.shape[0], nb = a.shape[1], i, nres = 0
    cdef const uint8_t* rp = <const uint8_t*>_data(a)
    cdef uint8_t* copy = NULL
    cdef uint8_t top
    cdef uint64_t* keys = NULL
    cdef uint64_t* tmp = NULL
    cdef uint64_t* ukeys = NULL
    cdef int64_t* ucounts = NULL
    cdef uint64_t kor = 0, kand = 0, kmax = 0
    cdef int64_t* ones = NULL
    cdef const uint8_t** urows = NULL
    cdef bint stray = False
    cdef int rc = MERGE_OK
    cdef cnp.ndarray out_k, out_c
    cdef uint8_t* orp
    try:
        if nbits <= 64:
            out_c = np.empty(0, dtype=np.int64)
            if n == 0:
                return np.zeros(0, dtype=np.uint64), out_c
            # work buffers from numpy, whose allocator asks for huge pages: with malloc, page
            # faults took a third of the time of a million shots
            work = np.empty(2 * n, dtype=np.uint64)
            keys = <uint64_t*>_data(work)
            tmp = keys + n
            _ts = _release(n >= NOGIL_MIN)
            qjm_rows_u64(rp, n, <int>nb,
                         EMPTY_KEY if nbits == 64 else ((<uint64_t>1 << nbits) - 1),
                         keys, &kor, &kand, &kmax)
            rc = _count_u64(keys, tmp, n, kor, kand, kmax, &ukeys, &ucounts, &nres)
            _reacquire(_ts)
            _raise_merge(rc)
            out_k = np.empty(nres, dtype=np.uint64)
            out_c = np.empty(nres, dtype=np.int64)
            _ts = _release(nres >= NOGIL_MIN)
            memcpy(_data(out_k), ukeys, nres * sizeof(uint64_t))
            memcpy(_data(out_c), ucounts, nres * sizeof(int64_t))
            _reacquire(_ts)
            return out_k, out_c
        # packed rows: stray bits above num_bits masked off in a copy, then merge_counts' rows
        # path with a count of one per row
        if n == 0:
            return np.zeros((0, nb), dtype=np.uint8), np.zeros(0, dtype=np.int64)
        ones_arr = np.ones(n, dtype=np.int64)
        ones = <int64_t*>_data(ones_arr)
        _ts = _release(n >= NOGIL_MIN)
        if nbits % 8:
            top = <uint8_t>((1 << (nbits % 8)) - 1)
            for i in range(n):
                if rp[i * nb] & ~top:
                    stray = True
                    break
            if stray:
                copy = <uint8_t*>malloc(n * nb)
                if copy == NULL:
                    rc = MERGE_NOMEM
                else:
                    memcpy(copy, rp, n * nb)
                    for i in range(n):
                        copy[i * nb] &= top
                    rp = copy
        if rc == MERGE_OK:
            rc = _merge_rows(&rp, <const int64_t**>&ones, &n, 1, nb, &urows, &ucounts, &nres)
        _reacquire(_ts)
        _raise_merge(rc)
        out_k = np.empty((nres, nb), dtype=np.uint8)
        out_c = np.empty(nres, dtype=np.int64)
        orp = <uint8_t*>_data(out_k)
        _ts = _release(nres >= NOGIL_MIN)
        for i in range(nres):
            memcpy(orp + i * nb, urows[i], nb)
        memcpy(_data(out_c), ucounts, nres * sizeof(int64_t))
        _reacquire(_ts)
        return out_k, out_c
    finally:
        free(copy)
        free(<void*>urows)
        if nbits > 64:
            free(ucounts)


@cython.wraparound(True)  # negative indices below: shape[-1] is nbytes
def join_shots(arrays) -> np.ndarray:
    """Join the bit arrays of several shot parts of one PUB along the shots axis, in order.

    join_shots(arrays: Sequence[np.ndarray]) -> np.ndarray

    Each array is uint8 of shape ``(*shape, shots_i, nbytes)`` (``BitArray.array``), with the same
    ``shape`` and ``nbytes``; the result is a new C-contiguous uint8 array of shape
    ``(*shape, sum(shots_i), nbytes)``, as ``BitArray.concatenate_shots`` of the parts gives. Raises
    ValueError for no arrays, an array that is not uint8 or has fewer than 2 dimensions, or
    arrays whose ``shape`` or ``nbytes`` differ; TypeError for one array instead of a sequence.
    """
    cdef PyThreadState* _ts = NULL
    parts = _shot_parts(arrays)
    first = parts[0]
    lead = tuple(first.shape[:-2])
    cdef Py_ssize_t nparts = len(parts), nb = first.shape[-1], total = 0, outer = 1, p, l
    for p in range(nparts):
        total += parts[p].shape[-2]
    for d in lead:
        outer *= d
    cdef cnp.ndarray out = np.empty(lead + (total, nb), dtype=np.uint8)
    cdef const uint8_t** src = <const uint8_t**>malloc(nparts * sizeof(uint8_t*))
    cdef Py_ssize_t* size = <Py_ssize_t*>malloc(nparts * sizeof(Py_ssize_t))
    cdef uint8_t* dst = <uint8_t*>_data(out)
    try:
        if src == NULL or size == NULL:
            raise MemoryError()
        for p in range(nparts):
            src[p] = <const uint8_t*>_data(<cnp.ndarray>parts[p])
            size[p] = parts[p].shape[-2] * nb  # bytes of the part per entry of shape
        _ts = _release(outer * total >= NOGIL_MIN)
        for l in range(outer):
            for p in range(nparts):
                memcpy(dst, src[p] + l * size[p], size[p])
                dst += size[p]
        _reacquire(_ts)
    finally:
        free(src)
        free(size)
    return out


# --------------------------------------------------------------------------------------------
# formatting
# --------------------------------------------------------------------------------------------


# format_bits shares one str per value when there are more than this many keys, all below
# FORMAT_CACHE_MAX_KEY and at most a quarter as many possible values as keys
cdef Py_ssize_t FORMAT_CACHE_MIN_SHOTS = 1024
cdef uint64_t FORMAT_CACHE_MAX_KEY = 1 << 16


def format_bits(keys, memory_slots, creg_sizes) -> list:
    """Format outcomes exactly as ``qiskit.result.postprocess.format_counts_memory`` does.

    format_bits(keys: np.ndarray, memory_slots: int | None,
                creg_sizes: Sequence[Sequence] | None) -> list[str]

    For each key the result equals ``format_counts_memory(hex(key), {"memory_slots": memory_slots,
    "creg_sizes": creg_sizes})``: binary, zero-padded to ``memory_slots`` (never truncated), then
    split into registers (last register first, separated by single spaces) when both
    ``creg_sizes`` and ``memory_slots`` are given.
    """
    cdef PyThreadState* _ts = NULL
    cdef cnp.ndarray arr = _keys_array(keys)
    cdef Py_ssize_t ms = 0, n, nb, nbits, bufsize, i, j, L, last_l = -1, bitlen, total = 0
    cdef Py_ssize_t nseg = 0, pos, a, b, size
    cdef bint packed, sep
    cdef char* buf = NULL
    cdef char* end
    cdef char* src
    cdef char* dst
    cdef Py_ssize_t* sizes = NULL
    cdef Py_ssize_t* seg_a = NULL
    cdef Py_ssize_t* seg_b = NULL
    cdef const uint64_t* kp = NULL
    cdef const uint8_t* rp = NULL
    cdef const uint8_t* row
    cdef uint64_t k = 0, kmax = 0
    cdef PyObject* s
    cdef PyObject** cache = NULL
    cdef Py_ssize_t ncache = 0
    cdef list result
    if memory_slots:
        ms = operator.index(memory_slots)
        if ms < 0:
            raise ValueError(f"memory_slots must be >= 0, got {ms}")
    py_sizes = _register_sizes(creg_sizes) if (creg_sizes and ms) else None
    sep = py_sizes is not None
    packed = arr.ndim == 2
    n = arr.shape[0]
    if packed:
        nb = arr.shape[1]
        rp = <const uint8_t*>_data(arr)
    else:
        nb = 8
        kp = <const uint64_t*>_data(arr)
    nbits = 8 * nb
    bufsize = (nbits if nbits > ms else ms) + 8
    result = PyList_New(n)  # items are NULL until set; a partly filled list is safe to drop
    try:
        buf = <char*>malloc(bufsize)
        if buf == NULL:
            raise MemoryError()
        memset(buf, 48, bufsize)
        end = buf + bufsize
        if sep:
            nseg = len(py_sizes)
            sizes = <Py_ssize_t*>malloc(nseg * sizeof(Py_ssize_t))
            seg_a = <Py_ssize_t*>malloc(nseg * sizeof(Py_ssize_t))
            seg_b = <Py_ssize_t*>malloc(nseg * sizeof(Py_ssize_t))
            if sizes == NULL or seg_a == NULL or seg_b == NULL:
                raise MemoryError()
            for j in range(nseg):
                sizes[j] = py_sizes[j]
        if not packed and n > FORMAT_CACHE_MIN_SHOTS:
            # few distinct small keys (memory of a few clbits): one str object per value, shared
            _ts = _release(n >= NOGIL_MIN)
            for i in range(n):
                if kp[i] > kmax:
                    kmax = kp[i]
            _reacquire(_ts)
            if kmax < FORMAT_CACHE_MAX_KEY and <Py_ssize_t>kmax * 4 < n:
                ncache = <Py_ssize_t>kmax + 1
                cache = <PyObject**>calloc(ncache, sizeof(PyObject*))
                if cache == NULL:
                    raise MemoryError()
        for i in range(n):
            # binary digits of the key, right-aligned at the end of buf
            if not packed:
                k = kp[i]
                if cache != NULL and cache[k] != NULL:
                    _Incref(cache[k])
                    _ListSet(result, i, cache[k])
                    continue
                for j in range(8):
                    memcpy(end - 8 * (j + 1), &BYTE_CHARS[8 * ((k >> (8 * j)) & 0xFF)], 8)
                bitlen = 64 - qjm_clz64(k) if k else 1
            else:
                row = rp + i * nb
                bitlen = 1
                for j in range(nb):
                    memcpy(end - 8 * (nb - j), &BYTE_CHARS[8 * row[j]], 8)
                for j in range(nb):
                    if row[j]:
                        bitlen = 8 * (nb - 1 - j) + 64 - qjm_clz64(row[j])
                        break
            L = bitlen if bitlen > ms else ms
            src = end - L
            if not sep:
                s = _UnicodeNew(L, 127)
                if s == NULL:
                    raise MemoryError()
                memcpy(_UnicodeData(s), src, L)
            else:
                if L != last_l:
                    # qiskit's slices bitstring[pos:pos + size] over a string of length L
                    pos = 0
                    total = nseg - 1
                    for j in range(nseg):
                        size = sizes[j]
                        a = pos if pos < L else L
                        b = pos + size if size < L - a else L
                        seg_a[j] = a
                        seg_b[j] = b
                        total += b - a
                        pos = b
                    last_l = L
                s = _UnicodeNew(total, 127)
                if s == NULL:
                    raise MemoryError()
                dst = <char*>_UnicodeData(s)
                for j in range(nseg):
                    if j:
                        dst[0] = 32
                        dst += 1
                    memcpy(dst, src + seg_a[j], seg_b[j] - seg_a[j])
                    dst += seg_b[j] - seg_a[j]
            _ListSet(result, i, s)  # steals the reference
            if cache != NULL:
                _Incref(s)
                cache[k] = s
    finally:
        if cache != NULL:
            for j in range(ncache):
                if cache[j] != NULL:
                    _Decref(cache[j])
            free(cache)
        free(buf)
        free(sizes)
        free(seg_a)
        free(seg_b)
    return result


# --------------------------------------------------------------------------------------------
# marginals
# --------------------------------------------------------------------------------------------


cdef int _marginal_into(cnp.ndarray keys, list idx, cnp.ndarray out) except -1:
    """Writes the marginal of keys over idx (new bit j = old bit idx[j]) into out."""
    cdef PyThreadState* _ts = NULL
    cdef Py_ssize_t n = keys.shape[0], m = len(idx), i, j, nseg = 0, nbi, nbo, src
    cdef Py_ssize_t* ind = <Py_ssize_t*>malloc((m if m else 1) * sizeof(Py_ssize_t))
    cdef int* s_src = <int*>malloc((m if m else 1) * sizeof(int))
    cdef int* s_dst = <int*>malloc((m if m else 1) * sizeof(int))
    cdef uint64_t* s_mask = <uint64_t*>malloc((m if m else 1) * sizeof(uint64_t))
    cdef const uint64_t* kp
    cdef const uint8_t* rp
    cdef const uint8_t* row
    cdef uint64_t* okp
    cdef uint8_t* orp
    cdef uint64_t k, v
    cdef unsigned int b
    cdef int k8
    try:
        if ind == NULL or s_src == NULL or s_dst == NULL or s_mask == NULL:
            raise MemoryError()
        for j in range(m):
            ind[j] = idx[j]
        if keys.ndim == 1:
            # runs of consecutive indices become one shift-and-mask each
            j = 0
            while j < m:
                i = j + 1
                while i < m and ind[i] == ind[i - 1] + 1:
                    i += 1
                s_src[nseg] = <int>ind[j]
                s_dst[nseg] = <int>j
                s_mask[nseg] = EMPTY_KEY if i - j >= 64 else ((<uint64_t>1 << (i - j)) - 1)
                nseg += 1
                j = i
            kp = <const uint64_t*>_data(keys)
            okp = <uint64_t*>_data(out)
            _ts = _release(n >= NOGIL_MIN)
            for i in range(n):
                k = kp[i]
                v = 0
                for j in range(nseg):
                    v |= ((k >> s_src[j]) & s_mask[j]) << s_dst[j]
                okp[i] = v
            _reacquire(_ts)
        else:
            nbi = keys.shape[1]
            rp = <const uint8_t*>_data(keys)
            # where each selected bit lives: byte offset in the row, shift in the byte
            for j in range(m):
                s_src[j] = <int>(nbi - 1 - (ind[j] >> 3))
                s_dst[j] = <int>(ind[j] & 7)
            if out.ndim == 1:
                okp = <uint64_t*>_data(out)
                _ts = _release(n >= NOGIL_MIN)
                for i in range(n):
                    row = rp + i * nbi
                    v = 0
                    for j in range(m):
                        v |= <uint64_t>((row[s_src[j]] >> s_dst[j]) & 1) << j
                    okp[i] = v
                _reacquire(_ts)
            else:
                nbo = out.shape[1]
                orp = <uint8_t*>_data(out)
                _ts = _release(n >= NOGIL_MIN)
                for i in range(n):
                    row = rp + i * nbi
                    # output byte by byte (least significant first), branch-free
                    j = 0
                    while j < m:
                        b = 0
                        for k8 in range(8):
                            if j + k8 >= m:
                                break
                            b |= ((row[s_src[j + k8]] >> s_dst[j + k8]) & 1) << k8
                        orp[i * nbo + nbo - 1 - (j >> 3)] = <uint8_t>b
                        j += 8
                _reacquire(_ts)
    finally:
        free(ind)
        free(s_src)
        free(s_dst)
        free(s_mask)
    return 0


cdef cnp.ndarray _marginal(cnp.ndarray keys, list idx):
    cdef Py_ssize_t m = len(idx), n = keys.shape[0]
    cdef cnp.ndarray out
    if m <= 64:
        out = np.empty(n, dtype=np.uint64)
    else:
        out = np.zeros((n, (m + 7) // 8), dtype=np.uint8)
    _marginal_into(keys, idx, out)
    return out


def marginal_memory(memory, indices, width) -> np.ndarray:
    """Per-shot marginal: new bit j is old bit ``indices[j]``; order of shots kept.

    marginal_memory(memory: np.ndarray, indices: Sequence[int], width: int) -> np.ndarray

    The result uses the representation for ``len(indices)`` bits. Raises ValueError for an index
    outside ``0..width-1``, a repeated index, or keys that do not match ``width``.
    """
    width = _check_width(width)
    keys = _keys_array(memory)
    _check_keys_width(keys, width)
    idx = _check_indices(indices, width)
    return _marginal(keys, idx)


def marginal_counts(keys, counts, indices, width) -> tuple:
    """Marginal counts: new bit j is old bit ``indices[j]``; keys merged (unique, ascending).

    marginal_counts(keys: np.ndarray, counts: np.ndarray, indices: Sequence[int], width: int)
        -> tuple[np.ndarray, np.ndarray]

    Raises ValueError for an index outside ``0..width-1``, a repeated index, keys that do not
    match ``width`` or negative counts; OverflowError when a sum exceeds int64.
    """
    width = _check_width(width)
    k = _keys_array(keys)
    c = _counts_array(counts)
    _check_keys_width(k, width)
    _check_pair(k, c)
    idx = _check_indices(indices, width)
    return _merge_arrays([_marginal(k, idx)], [c])


# --------------------------------------------------------------------------------------------
# expectation values
# --------------------------------------------------------------------------------------------


def expectation_z(keys, counts, mask) -> float:
    """Expectation of the diagonal Pauli with Z on the clbits set in ``mask``.

    expectation_z(keys: np.ndarray, counts: np.ndarray, mask: int) -> float

    ``sum(counts * (-1) ** popcount(key & mask)) / sum(counts)``, computed exactly and rounded
    once. For packed rows the mask is read big-endian over the row's bytes. Raises ValueError
    on a zero total, negative counts or a negative mask.
    """
    cdef PyThreadState* _ts = NULL
    cdef cnp.ndarray k = _keys_array(keys)
    cdef cnp.ndarray c = _counts_array(counts)
    _check_pair(k, c)
    mask = operator.index(mask)
    if mask < 0:
        raise ValueError("mask must be >= 0")
    cdef Py_ssize_t n = k.shape[0], i, j, nb
    cdef const int64_t* cp = <const int64_t*>_data(c)
    cdef const uint64_t* kp
    cdef const uint8_t* rp
    cdef const uint8_t* mp
    cdef uint64_t m64, x, cnt
    cdef uint64_t lo[2]
    cdef uint64_t hi[2]
    cdef int odd
    cdef bint negative = False
    cdef bytes mbytes
    lo[0] = lo[1] = hi[0] = hi[1] = 0
    if k.ndim == 1:
        m64 = mask & 0xFFFFFFFFFFFFFFFF
        kp = <const uint64_t*>_data(k)
        _ts = _release(n >= NOGIL_MIN)
        for i in range(n):
            if cp[i] < 0:
                negative = True
                break
            odd = qjm_popcount64(kp[i] & m64) & 1
            cnt = <uint64_t>cp[i]
            lo[odd] += cnt
            if lo[odd] < cnt:
                hi[odd] += 1
        _reacquire(_ts)
    else:
        nb = k.shape[1]
        nbits = 8 * nb  # a Python int: the shift below must not be done in C
        mbytes = (mask & ((1 << nbits) - 1)).to_bytes(nb, "big")
        mp = <const uint8_t*>(<char*>mbytes)
        rp = <const uint8_t*>_data(k)
        _ts = _release(n >= NOGIL_MIN)
        for i in range(n):
            if cp[i] < 0:
                negative = True
                break
            x = 0
            for j in range(nb):
                x ^= rp[i * nb + j] & mp[j]
            odd = qjm_popcount64(x) & 1
            cnt = <uint64_t>cp[i]
            lo[odd] += cnt
            if lo[odd] < cnt:
                hi[odd] += 1
        _reacquire(_ts)
    if negative:
        raise ValueError("counts must be non-negative")
    pos = (int(hi[0]) << 64) + int(lo[0])
    neg = (int(hi[1]) << 64) + int(lo[1])
    total = pos + neg
    if total == 0:
        raise ValueError("total counts are zero")
    return (pos - neg) / total
