"""Best-of-N timing with ``time.perf_counter``, the same N for both sides, interleaved."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SHORT_BUDGET = 1.0  # seconds: a case whose pairs take less than this gets extra pairs
EXTRA = 10  # at most this many times --repeat pairs


def timed(fn: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    """Seconds ``fn(*args)`` takes, after a full collection (so no earlier garbage is paid for)
    and ``gc.freeze()`` of what survives it.

    Freezing keeps the benchmark's own data (hundreds of MB of results, which a user's process
    would not hold) out of every later collection: the collections inside the timed calls of
    both sides, and the next repetition's collection before its timer. Measured on the 2-core
    machine: with a heap whose full collection takes 40 ms, two decoding threads started right
    after it ran one after the other (median 0.98x one thread); frozen, at 1.8x. The caller
    unfreezes when its case ends (``side_by_side`` does).
    """
    gc.collect()
    gc.freeze()
    t0 = time.perf_counter()
    out = fn(*args)
    t = time.perf_counter() - t0
    return t, out


@dataclass
class Pair:
    """Best times of the two sides over the same number of repetitions."""

    baseline: float
    qjm: float
    repeat: int  # repetitions of each side
    baseline_all: list[float]
    qjm_all: list[float]


def side_by_side(
    repeat: int,
    baseline: Callable[[Any], Any],
    qjm: Callable[[Any], Any],
    baseline_setup: Callable[[], Any] = lambda: None,
    qjm_setup: Callable[[], Any] = lambda: None,
    short: float = SHORT_BUDGET,
) -> Pair:
    """Time ``baseline(baseline_setup())`` and ``qjm(qjm_setup())`` ``repeat`` times each,
    alternating (baseline, qjm, baseline, qjm, ...), and keep the best of each side.

    Short cases get more pairs, so one noisy moment does not decide them: after ``repeat``
    pairs, pairs go on while the timed seconds of both sides together stay under ``short``, up to
    ``EXTRA * repeat`` pairs. Both sides always get the same number of repetitions.

    The setups run outside the timed region, once before every repetition (a fresh object per
    repetition: nothing computed by one repetition is reused by the next). What a timed call
    returns is dropped outside the timed region.
    """
    tb: list[float] = []
    tq: list[float] = []
    n = 0
    try:
        while n < repeat or (sum(tb) + sum(tq) < short and n < EXTRA * repeat):
            n += 1
            arg = baseline_setup()
            t, out = timed(baseline, arg)
            tb.append(t)
            del out, arg
            arg = qjm_setup()
            t, out = timed(qjm, arg)
            tq.append(t)
            del out, arg
    finally:
        gc.unfreeze()
    return Pair(min(tb), min(tq), n, tb, tq)
