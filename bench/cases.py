"""The benchmark cases of issue 3. Each runs both sides on the same data and returns its row.

qjm is always reached through its real code paths: ``qjm.records.decode_result`` and the kernels
(``qjm._kernels.kernels``) for decoding, ``ManagedResults`` (built as ``ManagedJobSet`` builds it,
from decoded ``JobRecord``s and a ``qjm.plan`` plan) for merging, formatting and marginals, and
``JobManager.run`` for the end-to-end case. A fresh ``ManagedResults`` is built outside the timed
region before every timed repetition, so nothing it caches (merged records) is ever timed as if
computed; the formatting cases time the first call for each experiment.

Every case also checks, outside the timed region, that qjm's answer equals the baseline's.
"""

from __future__ import annotations

import pickle
import tracemalloc
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from bench.data import WIDTH, Data, e2e_circuits, with_experiments
from bench.report import MemoryRow, Row
from bench.timing import side_by_side, timed


def _qjm():
    """qjm's pieces, imported when a case runs (after the environment is reported)."""
    from qjm._kernels import kernels
    from qjm.lookup import ExperimentIndex
    from qjm.managedresults import ManagedResults
    from qjm.plan import make_plan
    from qjm.records import decode_result

    return kernels, ExperimentIndex, ManagedResults, make_plan, decode_result


def managed_results(records, names: list[str], plan):
    """A ``ManagedResults`` over decoded records, as ``ManagedJobSet._results`` builds it."""
    _, ExperimentIndex, ManagedResults, _, _ = _qjm()
    backend_name = records[0].fields.get("backend_name") if records else None
    return ManagedResults("bench", backend_name, ExperimentIndex(names), plan, records, False)


def _fill(row: Row, pair) -> Row:
    row.baseline_s, row.qjm_s = pair.baseline, pair.qjm
    row.baseline_all, row.qjm_all = pair.baseline_all, pair.qjm_all
    row.reps = pair.repeat
    return row


def _memory_lists(result) -> list[list[str]]:
    return [exp.data.memory for exp in result.results]


# --------------------------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------------------------


def case_merge(data: Data, repeat: int) -> Row:
    """Counts of one experiment whose shots ran as ``merge_parts`` jobs, merged into one."""
    _, _, _, make_plan, decode_result = _qjm()
    s = data.sizes
    aer = data.merge
    dicts = [exp.data.counts for exp in aer.results]  # hex keys, as Result.data gives them
    nkeys = sum(map(len, dicts))
    row = Row(
        case="merge",
        title=f"merge counts of one experiment over {s.merge_parts} jobs",
        size=f"{s.merge_parts} x {nkeys // s.merge_parts:,} keys, {WIDTH} bits",
        items=nkeys,
        unit="keys",
        baseline="`Counter.update` over the count dicts",
        qjm="`ManagedResults.counts_arrays(0)` over a plan of "
        f"{s.merge_parts} shot parts (`merge_parts` -> `kernels.merge_counts`)",
        target=10,
    )
    # the parts, as the jobs of a shot-split experiment return them, decoded once (decode is
    # timed in its own case)
    records = []
    for i, exp in enumerate(aer.results):
        records.append(decode_result(with_experiments(aer, [exp], job_id=f"part-{i}")))
    plan = make_plan(1, 1, [s.merge_shots] * s.merge_parts)
    names = [aer.results[0].header["name"]]

    def baseline(_):
        total = Counter()
        for d in dicts:
            total.update(d)
        return total

    pair = side_by_side(
        repeat,
        baseline,
        lambda mr: mr.counts_arrays(0),
        qjm_setup=lambda: managed_results(records, names, plan),
    )
    _fill(row, pair)
    # check
    expect = {int(k, 16): v for k, v in baseline(None).items()}
    keys, counts = managed_results(records, names, plan).counts_arrays(0)
    got = dict(zip(keys.tolist(), counts.tolist()))
    if got != expect:
        row.check = f"merged counts differ from Counter: {len(got)} keys vs {len(expect)}"
    elif len(got) != len(keys):
        row.check = "merged keys are not unique"
    row.note = f"{len(expect):,} distinct keys after the merge"
    return row


def case_decode(data: Data, repeat: int) -> Row:
    """Aer's hex memory strings to integers."""
    kernels, *_ = _qjm()
    mem = [x for lst in _memory_lists(data.memory) for x in lst]
    row = Row(
        case="decode",
        title="decode memory",
        size=f"{len(mem):,} shots, {WIDTH} bits",
        items=len(mem),
        unit="shots",
        baseline="`np.array([int(x, 16) for x in mem], dtype=np.uint64)`",
        qjm=f"`kernels.parse_hex(mem, {WIDTH})` (what `decode_result` calls)",
        target=10,
    )

    def baseline(_):
        return np.array([int(x, 16) for x in mem], dtype=np.uint64)

    pair = side_by_side(repeat, baseline, lambda _: kernels.parse_hex(mem, WIDTH))
    _fill(row, pair)
    if not np.array_equal(baseline(None), kernels.parse_hex(mem, WIDTH)):
        row.check = "parse_hex differs from int(x, 16)"
    return row


def case_get_counts(data: Data, repeat: int) -> Row:
    """``get_counts`` of every experiment, first call for each."""
    _, _, _, make_plan, decode_result = _qjm()
    s = data.sizes
    result = data.counts
    jobs = data.counts_jobs
    n = len(result.results)
    nkeys = sum(len(exp.data.counts) for exp in result.results)
    records = [decode_result(r) for r in jobs]
    plan = make_plan(n, s.counts_chunk)
    names = [exp.header["name"] for exp in result.results]
    row = Row(
        case="get_counts",
        title="get_counts for every experiment",
        size=f"{n:,} experiments x {nkeys // n:,} keys",
        items=nkeys,
        unit="keys",
        baseline="`[result.get_counts(i) for i in range(n)]` on one `Result`",
        qjm=f"`[mr.get_counts(i) for i in range(n)]`, a fresh `ManagedResults` of {len(jobs)} jobs "
        "per repetition",
        target=10,
    )
    pair = side_by_side(
        repeat,
        lambda _: [result.get_counts(i) for i in range(n)],
        lambda mr: [mr.get_counts(i) for i in range(n)],
        qjm_setup=lambda: managed_results(records, names, plan),
    )
    _fill(row, pair)
    mr = managed_results(records, names, plan)
    for i in range(n):
        a, b = result.get_counts(i), mr.get_counts(i)
        if dict(a) != dict(b):
            row.check = f"get_counts({i}) differs from Result.get_counts({i})"
            break
    return row


def case_get_memory(data: Data, repeat: int) -> Row:
    """``get_memory`` of every experiment, first call for each."""
    _, _, _, make_plan, decode_result = _qjm()
    result = data.memory
    n = len(result.results)
    shots = sum(len(m) for m in _memory_lists(result))
    records = [decode_result(result)]
    plan = make_plan(n, n)
    names = [exp.header["name"] for exp in result.results]
    row = Row(
        case="get_memory",
        title="get_memory",
        size=f"{n} x {shots // n:,} shots",
        items=shots,
        unit="shots",
        baseline="`[result.get_memory(i) for i in range(n)]`",
        qjm="`[mr.get_memory(i) for i in range(n)]`, a fresh `ManagedResults` per repetition",
        target=5,
    )
    pair = side_by_side(
        repeat,
        lambda _: [result.get_memory(i) for i in range(n)],
        lambda mr: [mr.get_memory(i) for i in range(n)],
        qjm_setup=lambda: managed_results(records, names, plan),
    )
    _fill(row, pair)
    mr = managed_results(records, names, plan)
    for i in range(n):
        if list(result.get_memory(i)) != list(mr.get_memory(i)):
            row.check = f"get_memory({i}) differs from Result.get_memory({i})"
            break
    return row


MARGINAL_INDICES = [0, 3, 5, 8, 11, 13, 16, 19, 22, 26]


def case_marginal(data: Data, repeat: int) -> Row:
    """Counts of 10 of the 27 clbits."""
    from qiskit.result import marginal_distribution

    _, _, _, make_plan, decode_result = _qjm()
    s = data.sizes
    indices = MARGINAL_INDICES[: s.marginal_bits]
    result = data.marginal
    counts = result.get_counts(0)  # the binary-keyed Counts a user hands to qiskit
    records = [decode_result(result)]
    plan = make_plan(1, 1)
    names = [result.results[0].header["name"]]
    row = Row(
        case="marginal",
        title=f"marginal counts of {len(indices)} bits",
        size=f"{len(counts):,} keys, {WIDTH} bits",
        items=len(counts),
        unit="keys",
        baseline="`qiskit.result.marginal_distribution(result.get_counts(0), indices)` "
        "(get_counts not timed)",
        qjm="`mr.marginal_counts(0, indices)`, a fresh `ManagedResults` per repetition",
        target=2,
    )
    pair = side_by_side(
        repeat,
        lambda _: marginal_distribution(counts, indices),
        lambda mr: mr.marginal_counts(0, indices),
        qjm_setup=lambda: managed_results(records, names, plan),
    )
    _fill(row, pair)
    expect = dict(marginal_distribution(counts, indices))
    got = dict(managed_results(records, names, plan).marginal_counts(0, indices))
    if got != expect:
        row.check = "marginal_counts differs from qiskit.result.marginal_distribution"
    row.note = f"indices {indices}"
    return row


def case_decode_threads(data: Data, repeat: int) -> Row:
    """Two fetch threads each decoding its own result's memory, against one thread doing both."""
    kernels, *_ = _qjm()
    a = [x for lst in _memory_lists(data.memory) for x in lst]
    b = [x for lst in _memory_lists(data.memory2) for x in lst]
    row = Row(
        case="decode_threads",
        title="decode in 2 fetch threads",
        size=f"2 x {len(a):,} shots, {WIDTH} bits",
        items=len(a) + len(b),
        unit="shots",
        baseline="the same `parse_hex` on both lists in 1 thread, one after the other",
        qjm="`ThreadPoolExecutor(2)`: `parse_hex` on each list in its own thread",
        target=1.6,
    )
    pool = ThreadPoolExecutor(2)
    try:
        list(pool.map(lambda _: None, range(4)))  # both threads started before timing

        def one_thread(_):
            return [kernels.parse_hex(a, WIDTH), kernels.parse_hex(b, WIDTH)]

        def two_threads(_):
            fa = pool.submit(kernels.parse_hex, a, WIDTH)
            fb = pool.submit(kernels.parse_hex, b, WIDTH)
            return [fa.result(), fb.result()]

        pair = side_by_side(repeat, one_thread, two_threads)
        _fill(row, pair)
        x, y = one_thread(None), two_threads(None)
        if not (np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1])):
            row.check = "two threads decoded differently from one"
    finally:
        pool.shutdown()
    return row


def _end_to_end(data: Data, repeat: int, case: str, chunk: int, workers: int) -> Row:
    """Run every circuit on Aer and read every histogram: Aer directly vs qjm's job set of
    ``chunk`` circuits per job and ``workers`` threads."""
    from qiskit_aer import AerSimulator

    import qjm

    s = data.sizes
    circuits = e2e_circuits(s.e2e_circuits, s.e2e_qubits)
    n = len(circuits)
    seed = 1234
    jobs = -(-n // chunk)
    row = Row(
        case=case,
        title=f"end to end: {n:,} circuits on Aer, all counts read"
        + (f" ({jobs} job(s), {workers} worker(s))" if case != "end_to_end" else ""),
        size=f"{s.e2e_qubits} qubits, {s.e2e_shots:,} shots",
        items=n,
        unit="circuits",
        baseline="`AerSimulator().run(circuits, shots, seed_simulator).result()`, then "
        "`get_counts(i)` for each",
        qjm="`JobManager(store=':memory:').run(circuits, backend=AerSimulator(), shots, "
        f"seed_simulator, max_experiments_per_job={chunk}, max_workers={workers})`, "
        "`results()`, then `get_counts(i)` for each",
        target=1.0,
    )
    job_sets = []

    def baseline(sim):
        res = sim.run(circuits, shots=s.e2e_shots, seed_simulator=seed).result()
        return [res.get_counts(i) for i in range(n)]

    def with_qjm(args):
        sim, manager = args
        job_set = manager.run(
            circuits,
            backend=sim,
            shots=s.e2e_shots,
            seed_simulator=seed,
            max_experiments_per_job=chunk,
            max_workers=workers,
        )
        job_sets.append(job_set)
        results = job_set.results()
        return [results.get_counts(i) for i in range(n)]

    try:
        # the check runs first, untimed: it is also the warm-up (Aer's first run in a process
        # pays for starting its engine; neither side should pay that)
        expect = baseline(AerSimulator())
        got = with_qjm((AerSimulator(), qjm.JobManager(store=":memory:")))
        problems = [
            i
            for i in range(n)
            if sum(got[i].values()) != s.e2e_shots
            or {len(k) for k in got[i]} != {len(k) for k in expect[i]}
        ]
        if problems:
            row.check = f"get_counts({problems[0]}) is not a histogram of {s.e2e_shots} shots"
        del expect, got
        pair = side_by_side(
            repeat,
            baseline,
            with_qjm,
            baseline_setup=AerSimulator,
            qjm_setup=lambda: (AerSimulator(), qjm.JobManager(store=":memory:")),
        )
        _fill(row, pair)
    finally:
        for job_set in job_sets:
            job_set.shutdown()
    row.note = (
        f"{jobs} job(s) of {chunk} circuits, {workers} worker(s); both sides seed_simulator="
        f"{seed} (Aer seeds each experiment from its index in its job, so counts differ between "
        f"one job and {jobs}: the check compares shots and key widths, not counts)"
    )
    return row


def case_end_to_end(data: Data, repeat: int) -> Row:
    """The end-to-end case with the harness's chosen job size and workers (``Sizes``)."""
    s = data.sizes
    return _end_to_end(data, repeat, "end_to_end", s.e2e_chunk, s.e2e_workers)


E2E_CONFIGS = [(1, 1), (2, 2), (5, 2), (10, 2), (20, 2), (10, 4)]  # (jobs, workers)


def case_end_to_end_configs(data: Data, repeat: int) -> list[Row]:
    """The end-to-end case for several job sizes and worker counts (not run by default: it is
    how the harness's choice was made)."""
    n = data.sizes.e2e_circuits
    rows = []
    for jobs, workers in E2E_CONFIGS:
        chunk = -(-n // jobs)
        row = _end_to_end(data, repeat, f"e2e_{jobs}x{workers}", chunk, workers)
        data.log(f"  {row.case}: {row.baseline_s:.3f} s vs {row.qjm_s:.3f} s, {row.ratio:.2f}x")
        rows.append(row)
    return rows


SAMPLER_SEED = 1234


def _sampler_end_to_end(data: Data, repeat: int, case: str, jobs: int | None) -> Row:
    """Run every PUB on Aer's ``SamplerV2`` and read every PUB's counts: one ``sampler.run``
    against qjm's job set over a SQLite store, with ``max_pubs_per_job`` left to its default
    (``jobs=None``: one job) or set to give ``jobs`` jobs."""
    import shutil
    import tempfile
    import time

    from qiskit_aer.primitives import SamplerV2

    import qjm

    s = data.sizes
    pubs = data.sampler_pubs
    n, shots, seed = len(pubs), s.sampler_e2e_shots, SAMPLER_SEED
    per_job = None if jobs is None else -(-n // jobs)
    limit = "" if per_job is None else f", max_pubs_per_job={per_job}"
    row = Row(
        case=case,
        title=f"sampler end to end: {n:,} PUBs on Aer's SamplerV2, all counts read"
        + ("" if case == "sampler_end_to_end" else f" (max_pubs_per_job={per_job})"),
        size=f"{s.sampler_e2e_qubits} qubits, {_shots(shots)} shots",
        items=n,
        unit="PUBs",
        baseline=f"`SamplerV2(seed={seed}).run(pubs, shots={shots}).result()`, then "
        "`[r.data.meas.get_counts() for r in result]`",
        qjm=f"`JobManager(store=<SQLite file in a temp dir>).run(pubs, sampler=SamplerV2(seed="
        f"{seed}), shots={shots}{limit})`, `results()`, then `[res.get_counts(i) for i in "
        "range(n)]`",
        target=1.0,
    )
    tmp = tempfile.mkdtemp(prefix="qjm-bench-")
    managers = []

    def manager():
        # a fresh store per repetition, a real file as the default store is (created untimed,
        # as JobManager() is created once in a user's process)
        path = tempfile.mkdtemp(dir=tmp)
        managers.append(qjm.JobManager(store=f"{path}/jobsets.sqlite"))
        return managers[-1]

    def baseline(sampler):
        result = sampler.run(pubs, shots=shots).result()
        return [r.data.meas.get_counts() for r in result]

    def with_qjm(args):
        sampler, mgr = args
        job_set = mgr.run(pubs, sampler=sampler, shots=shots, max_pubs_per_job=per_job)
        res = job_set.results()
        return [res.get_counts(i) for i in range(n)]

    try:
        # the check runs first, untimed: it is also the warm-up (Aer's first run in a process
        # pays for starting its engine; neither side should pay that)
        t0 = time.perf_counter()
        result = SamplerV2(seed=seed).run(pubs, shots=shots).result()
        t1 = time.perf_counter()
        expect = [r.data.meas.get_counts() for r in result]
        t_base_counts = time.perf_counter() - t1
        del result
        mgr = manager()
        job_set = mgr.run(pubs, sampler=SamplerV2(seed=seed), shots=shots, max_pubs_per_job=per_job)
        res = job_set.results()
        t2 = time.perf_counter()
        got = [res.get_counts(i) for i in range(n)]
        t_qjm_counts = time.perf_counter() - t2
        n_jobs = len(job_set.managed_jobs())
        del res, job_set
        mgr.shutdown()
        widths = [
            i
            for i in range(n)
            if sum(got[i].values()) != shots
            or sum(expect[i].values()) != shots
            or {len(k) for k in got[i]} != {len(k) for k in expect[i]}
        ]
        if widths:
            row.check = (
                f"get_counts({widths[0]}) is not a histogram of {shots} shots with the baseline's "
                "key width"
            )
        elif n_jobs == 1 and got != expect:
            first = next(i for i in range(n) if got[i] != expect[i])
            row.check = f"one job, same seed, yet get_counts({first}) differs from the baseline's"
        same = sum(got[i] == expect[i] for i in range(n))
        del expect, got
        pair = side_by_side(
            repeat,
            baseline,
            with_qjm,
            baseline_setup=lambda: SamplerV2(seed=seed),
            qjm_setup=lambda: (SamplerV2(seed=seed), manager()),
        )
        _fill(row, pair)
    finally:
        for mgr in managers:
            mgr.shutdown()
        del managers[:]
        shutil.rmtree(tmp, ignore_errors=True)
    if n_jobs == 1:
        checked = (
            f"Checked untimed: every PUB's counts equal the baseline's ({same:,} of {n:,} dicts "
            "equal; one job with the sampler's own seed samples as the one `sampler.run`)"
        )
    else:
        checked = (
            f"Checked untimed: every PUB's counts total {shots:,} shots with the baseline's key "
            f"width; {same:,} of {n:,} dicts also equal the baseline's exactly (a split run "
            "samples as the unsplit one only where each job gets the seed the unsplit run "
            "reaches at its first PUB)"
        )
    row.note = (
        f"{n_jobs} job(s), default max_workers; store: a new SQLite file per repetition "
        f"(WAL, as the default `$QJM_HOME/jobsets.sqlite`). {checked}. Reading every PUB's "
        f"counts in the untimed check: the baseline's `get_counts()` loop {t_base_counts:.2f} s "
        f"(after its `sampler.run(...).result()`, {t1 - t0:.2f} s), qjm's {t_qjm_counts:.2f} s."
    )
    return row


def case_sampler_end_to_end(data: Data, repeat: int) -> Row:
    """The sampler end-to-end case as a user would run it: ``max_pubs_per_job`` not given."""
    return _sampler_end_to_end(data, repeat, "sampler_end_to_end", None)


SAMPLER_E2E_JOBS = [None, 2, 4, 10]  # None: max_pubs_per_job not given (one job)


def case_sampler_end_to_end_configs(data: Data, repeat: int) -> list[Row]:
    """The sampler end-to-end case with ``max_pubs_per_job`` giving 1 (the default), 2, 4 and 10
    jobs (not run by default)."""
    rows = []
    for jobs in SAMPLER_E2E_JOBS:
        case = "sampler_e2e_default" if jobs is None else f"sampler_e2e_{jobs}jobs"
        row = _sampler_end_to_end(data, repeat, case, jobs)
        data.log(f"  {row.case}: {row.baseline_s:.3f} s vs {row.qjm_s:.3f} s, {row.ratio:.2f}x")
        rows.append(row)
    return rows


def _shots(n: int) -> str:
    """1000000 -> "1M", 20000 -> "20k", else with thousands separators."""
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return f"{n:,}"


def _best(repeat: int, fn: Callable[[], object]) -> float:
    """Best of ``repeat`` timed calls (as one side of ``side_by_side`` is timed)."""
    import gc

    try:
        return min(timed(fn)[0] for _ in range(repeat))
    finally:
        gc.unfreeze()


def case_bitarray_counts(data: Data, repeat: int) -> Row:
    """The counts of one Sampler V2 PUB: qiskit's ``BitArray.get_counts()`` against
    ``bitarray_counts`` and ``format_bits`` into the same dict of bitstrings."""
    kernels, *_ = _qjm()
    ba = data.sampler
    n, num_bits = ba.num_shots, ba.num_bits
    row = Row(
        case="bitarray_counts",
        title=f"bitarray counts, {_shots(n)} shots x {num_bits} bits",
        size=f"1 PUB, {n:,} shots x {num_bits} bits",
        items=n,
        unit="shots",
        baseline="`ba.get_counts()` on the PUB's `BitArray`",
        qjm=f"`keys, counts = kernels.bitarray_counts(ba.array, {num_bits})`, then "
        f"`dict(zip(kernels.format_bits(keys, {num_bits}, None), counts.tolist()))`: the same "
        "dict",
        target=50,
    )

    def with_qjm(_):
        keys, counts = kernels.bitarray_counts(ba.array, num_bits)
        return dict(zip(kernels.format_bits(keys, num_bits, None), counts.tolist()))

    pair = side_by_side(repeat, lambda _: ba.get_counts(), with_qjm)
    _fill(row, pair)
    expect = ba.get_counts()
    if with_qjm(None) != expect:
        row.check = "the counts differ from BitArray.get_counts()"
    # where qjm's time goes (untimed by the table): counting, then the strings, then the dict
    keys, counts = kernels.bitarray_counts(ba.array, num_bits)
    t_count = _best(repeat, lambda: kernels.bitarray_counts(ba.array, num_bits))
    t_format = _best(repeat, lambda: kernels.format_bits(keys, num_bits, None))
    row.note = (
        f"{len(expect):,} distinct outcomes; of qjm's time, `bitarray_counts` alone (the (keys, "
        f"counts) arrays): {t_count * 1e3:.1f} ms, {row.baseline_s / t_count:.0f}x the "
        f"baseline's best; `format_bits` of the keys: {t_format * 1e3:.1f} ms; the rest, about "
        f"{(row.qjm_s - t_count - t_format) * 1e3:.0f} ms, is building the dict of "
        f"{len(expect):,} str keys (which `get_counts` builds too)"
    )
    return row


def case_join_shots(data: Data, repeat: int) -> Row:
    """The shot parts of one PUB joined into one ``BitArray``."""
    from qiskit.primitives import BitArray

    kernels, *_ = _qjm()
    parts = data.sampler_parts
    num_bits = parts[0].num_bits
    total = sum(p.num_shots for p in parts)
    row = Row(
        case="join_shots",
        title=f"join {len(parts)} shot parts",
        size=f"{len(parts)} x {parts[0].num_shots:,} shots x {num_bits} bits",
        items=total,
        unit="shots",
        baseline="`acc = BitArray.concatenate_shots([acc, part])` in a loop over the parts",
        qjm="`BitArray(kernels.join_shots([p.array for p in parts]), num_bits)`",
        target=10,
    )

    def baseline(_):
        acc = parts[0]
        for part in parts[1:]:
            acc = BitArray.concatenate_shots([acc, part])
        return acc

    def with_qjm(_):
        return BitArray(kernels.join_shots([p.array for p in parts]), num_bits)

    pair = side_by_side(repeat, baseline, with_qjm)
    _fill(row, pair)
    want, got = baseline(None), with_qjm(None)
    if not (got == want and np.array_equal(got.array, want.array)):
        row.check = "join_shots differs from BitArray.concatenate_shots"
    t_one = _best(repeat, lambda: BitArray.concatenate_shots(parts))
    row.note = (
        "the loop copies the shots joined so far again at every part (quadratic); one call "
        "`BitArray.concatenate_shots(parts)` over all the parts is a single `np.concatenate`, "
        f"linear like `join_shots`: {t_one * 1e3:.2f} ms, a ratio of {t_one / row.qjm_s:.2f}x "
        "against qjm's best"
    )
    return row


def case_memory(data: Data, repeat: int) -> MemoryRow:
    """Memory held by a ManagedResults of every counts experiment vs the Results it replaces."""
    _, _, _, make_plan, decode_result = _qjm()
    s = data.sizes
    jobs = data.counts_jobs
    n = sum(len(r.results) for r in jobs)
    nkeys = sum(len(exp.data.counts) for r in jobs for exp in r.results)
    names = [exp.header["name"] for r in jobs for exp in r.results]
    plan = make_plan(n, s.counts_chunk)
    # the data both are built from: each job's Result as it arrives (unpickled: fresh objects,
    # every string allocated, as a Result read from a backend)
    blobs = [pickle.dumps(r, protocol=5) for r in jobs]
    row = MemoryRow(
        case="memory",
        title=f"memory held by a {n:,}-experiment ManagedResults",
        size=f"{n:,} experiments x {nkeys // n:,} keys, {len(jobs)} jobs",
        baseline=f"the {len(jobs)} qiskit `Result` objects, kept",
        qjm="each `Result` decoded with `decode_result` as it arrives and dropped; the "
        "`JobRecord`s in a `ManagedResults`",
    )

    def measure(build: Callable[[], object]) -> tuple[int, int]:
        import gc

        gc.collect()
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            base, _ = tracemalloc.get_traced_memory()
            kept = build()
            gc.collect()
            held, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        del kept
        return held - base, peak - base

    def build_results():
        return [pickle.loads(b) for b in blobs]

    def build_managed():
        records = []
        for b in blobs:
            result = pickle.loads(b)
            records.append(decode_result(result))
            del result
        return managed_results(records, names, plan)

    row.baseline_held, row.baseline_peak = measure(build_results)
    row.qjm_held, row.qjm_peak = measure(build_managed)
    mr = build_managed()
    if dict(mr.get_counts(n - 1)) != dict(jobs[-1].get_counts(len(jobs[-1].results) - 1)):
        row.check = "the ManagedResults reads different counts"
    row.note = (
        "tracemalloc sees Python objects and numpy buffers, not memory a compiled kernel takes "
        "with malloc"
    )
    return row


CASES: dict[str, Callable[[Data, int], Row | MemoryRow | list[Row]]] = {
    "merge": case_merge,
    "decode": case_decode,
    "get_counts": case_get_counts,
    "get_memory": case_get_memory,
    "marginal": case_marginal,
    "decode_threads": case_decode_threads,
    "end_to_end": case_end_to_end,
    "memory": case_memory,
    "bitarray_counts": case_bitarray_counts,
    "join_shots": case_join_shots,
    "sampler_end_to_end": case_sampler_end_to_end,
    # not run by default
    "end_to_end_configs": case_end_to_end_configs,
    "sampler_end_to_end_configs": case_sampler_end_to_end_configs,
}
