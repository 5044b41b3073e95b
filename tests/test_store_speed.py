"""The store and the pool at full speed (issue 13): one writer committing in batches, statuses and
reports that read no record, records kept as their bytes and decoded as they are read, each result
held once, and a manager that lets finished job sets go. Fast, and no absolute times."""

from __future__ import annotations

import gc
import sqlite3
import threading
import time
import weakref

import numpy as np
import pytest
from backends import PartialFailBackend, SlowBackend
from hypothesis import event, given, settings
from hypothesis import strategies as st
from qiskit import QuantumCircuit
from qiskit.providers import BackendV2, JobStatus, JobV1, Options
from qiskit_aer import AerSimulator

import qjm
import qjm.store as store_module
from qjm import wire
from qjm.records import PooledRecord, decode_result
from qjm.store import Store


class _TrackedJob(JobV1):
    def __init__(self, backend, job_id, result):
        super().__init__(backend, job_id)
        self._result = result

    def submit(self):
        return None

    def status(self):
        return JobStatus.DONE

    def result(self, timeout=None):
        return self._result


class TrackedBackend(BackendV2):
    """A backend whose jobs are DONE at once, each holding its Aer ``Result``, and that keeps no
    reference to its jobs: the test holds weak references to see which of them stay alive."""

    def __init__(self):
        super().__init__(name="tracked")
        self._inner = AerSimulator()
        self.jobs_made: list[weakref.ref] = []
        self._serial = 0
        self._lock = threading.Lock()

    @classmethod
    def _default_options(cls):
        return Options(shots=100, memory=False, seed_simulator=None)

    @property
    def target(self):
        return self._inner.target

    @property
    def max_circuits(self):
        return None

    def run(self, run_input, **options):
        result = self._inner.run(run_input, **options).result()
        with self._lock:
            self._serial += 1
            job = _TrackedJob(self, f"tracked-{self._serial}", result)
            self.jobs_made.append(weakref.ref(job))
        return job


def _count_calls(monkeypatch, module, name) -> list:
    calls: list = []
    real = getattr(module, name)

    def counting(*args, **kwargs):
        calls.append(name)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counting)
    return calls


# -- lazy statuses, reports, listing ------------------------------------------------------------


def test_statuses_and_reports_of_a_retrieved_set_read_no_record(
    tmp_path, make_circuits, monkeypatch
):
    store = tmp_path / "s.sqlite"
    backend = PartialFailBackend(fail_names={"c4"}, inner=AerSimulator())
    job_set = qjm.JobManager(store=store).run(
        make_circuits(9), backend=backend, max_experiments_per_job=3, shots=20
    )
    expected_c0 = job_set.results(timeout=60, partial=True).get_counts("c0")
    expected_report = job_set.report(detailed=False)

    decoded = _count_calls(monkeypatch, wire, "decode_record")
    readers = _count_calls(monkeypatch, wire, "PooledReader")
    unpacked = _count_calls(monkeypatch, wire, "_unpack")
    again = qjm.JobManager(store=store).retrieve_job_set(job_set.job_set_id())
    assert again.statuses() == [JobStatus.DONE, JobStatus.ERROR, JobStatus.DONE]
    report = again.report(detailed=False)
    assert "Partially failed jobs: 1" in report and "Successful jobs: 2" in report
    assert report.splitlines()[5:] == expected_report.splitlines()[5:]
    listed = qjm.JobManager(store=store).job_sets()
    assert [s.job_set_id() for s in listed] == [job_set.job_set_id()]
    assert "_managed" not in listed[0].__dict__  # listed: nothing read but its row
    assert listed[0].statuses() == again.statuses() and len(listed[0]) == 3
    assert decoded == readers == unpacked == [], "a status or a report decoded a record"

    # the failed job's error names its failed experiment: that record only is read (its
    # header, and the failed experiment)
    assert "c4" in again.report(detailed=True) and "c4" in again.error_messages()
    assert len(readers) == 1
    results = again.results(partial=True)  # the others' bytes, in one sweep, none decoded
    assert len(readers) == 1 and decoded == []
    assert results.get_counts("c0") == expected_c0
    assert len(readers) == 2  # job 0's header, when its experiment was read


def test_statuses_in_a_new_process_read_job_rows_only(tmp_path, make_circuits):
    """What ``statuses()`` of a retrieved set asks SQLite: no statement reads a record's
    bytes."""
    store = tmp_path / "s.sqlite"
    job_set = qjm.JobManager(store=store).run(
        make_circuits(6), backend=AerSimulator(), max_experiments_per_job=2, shots=20
    )
    job_set.results(timeout=60)
    manager = qjm.JobManager(store=store)
    seen: list[str] = []
    manager._store._conn.set_trace_callback(seen.append)
    again = manager.retrieve_job_set(job_set.job_set_id())
    assert again.statuses() == [JobStatus.DONE] * 3
    again.report()
    reads = [sql for sql in seen if "record" in sql]
    assert reads and all("record IS NOT NULL" in sql for sql in reads), reads


# -- the writer ----------------------------------------------------------------------------------


def test_results_returns_only_what_the_writer_committed(tmp_path, make_circuits, monkeypatch):
    """A slow disk (each transaction 50 ms): results() returns once every result it returns is
    committed, and the writer put many writes in each transaction."""
    transactions: list[int] = []
    real = Store._transaction

    def slow(self, groups):
        time.sleep(0.05)
        transactions.append(len(groups))
        return real(self, groups)

    monkeypatch.setattr(Store, "_transaction", slow)
    store = tmp_path / "s.sqlite"
    manager = qjm.JobManager(store=store)
    job_set = manager.run(
        make_circuits(12), backend=AerSimulator(), max_experiments_per_job=1, shots=20
    )
    results = job_set.results(timeout=120)
    assert results.success
    assert manager._store.pending() == 0
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        kept = conn.execute("SELECT COUNT(*) FROM results WHERE record IS NOT NULL").fetchone()[0]
    finally:
        conn.close()
    assert kept == 12  # committed before results() returned
    writes = sum(transactions)
    assert writes >= 12 * 3 and len(transactions) < writes / 2, transactions


def test_a_timeout_commits_what_arrived(tmp_path, make_circuits, monkeypatch):
    real = Store._transaction
    monkeypatch.setattr(
        Store, "_transaction", lambda self, groups: time.sleep(0.05) or real(self, groups)
    )
    store = tmp_path / "s.sqlite"
    backend = SlowBackend(delay=lambda names: 0.0 if "c0" in names else None, inner=AerSimulator())
    manager = qjm.JobManager(store=store)
    job_set = manager.run(make_circuits(2), backend=backend, max_experiments_per_job=1, shots=10)
    with pytest.raises(qjm.JobManagerTimeoutError):
        job_set.results(timeout=2)
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        assert conn.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 1
    finally:
        conn.close()
    backend.release_all()
    assert job_set.results(timeout=60).success


def test_one_failed_write_costs_no_other(tmp_path):
    """A batch whose one write fails is committed write by write: only that one fails."""
    store = Store(tmp_path / "s.sqlite")
    store.add_job_set(
        "a", None, [], None, ["x"], {"n_experiments": 1, "n_parts": 1, "jobs": []}, "{}"
    )
    errors: list = []
    gate = threading.Event()
    real = store._transaction

    def gated(groups):
        gate.wait(10)
        return real(groups)

    store._transaction = gated
    store.set_job("a", 0, "j0", None, None, wait=False, callback=errors.append)
    bad = store_module._Writes([("INSERT INTO nowhere VALUES (1)", ())], wait=False)
    bad.callback = errors.append
    store._write_all(bad)
    store.set_job("a", 1, "j1", None, None, wait=False, callback=errors.append)
    gate.set()
    assert store.flush(timeout=30)
    assert [e is None for e in errors] == [True, False, True]
    assert "no such table" in str(errors[1])
    assert set(store.jobs("a")) == {0, 1}
    # a value SQLite cannot hold fails that write only, named; the writer goes on
    with pytest.raises(store_module.StoreError, match="too large"):
        store.add_attempt("a", 2**70, 0.0, None, None)
    store.add_attempt("a", 0, 1.0, "j0", None)
    assert store.attempts("a") == {0: [(1.0, "j0", None)]}
    print(
        f"failed writes: {sum(e is not None for e in errors)} of 3 in a batch, then 1 value too "
        f"large; kept: jobs {sorted(store.jobs('a'))}, the attempt written after the failure"
    )
    store.close()


# -- records as their bytes ------------------------------------------------------------------------


def test_pooled_records_read_back_exactly(make_circuits):
    """Fields in their order and types (enums, tuples, int keys, -0.0, NaN), statevectors,
    memory, and registers wider than 64 clbits (arrays of their own) read back exactly."""
    wide = QuantumCircuit(70, 70, name="wide")
    wide.h(range(0, 70, 3))
    wide.measure(range(70), range(70))
    sv = QuantumCircuit(2, 2, name="sv")
    sv.h(0)
    sv.save_statevector()
    sv.measure([0, 1], [0, 1])
    result = AerSimulator().run(make_circuits(5), shots=50, memory=True, seed_simulator=3).result()
    for circuit, method in ((wide, "stabilizer"), (sv, "statevector")):
        one = AerSimulator(method=method).run(circuit, shots=50, memory=True).result()
        result.results.append(one.results[0])
    record = decode_result(result)
    exps = record.experiments
    exps[1].fields = {k: exps[1].fields[k] for k in reversed(list(exps[1].fields))}
    exps[2].fields["extra"] = (1, 2)
    exps[2].fields["header"]["metadata"] = {"b": -0.0, "a": float("nan"), 3: "int key"}
    del exps[3].fields["time_taken"]
    exps[4].fields["seed_simulator"] = True  # equal to 1, not the same type
    blob = wire.encode_record(record)
    assert blob[4:6] == wire.RECORD_VERSION.to_bytes(2, "little")
    for back in (wire.decode_record(blob), PooledRecord(blob)):
        assert len(back.experiments) == len(exps)
        for a, b in zip(exps, back.experiments):
            assert repr(a.fields) == repr(b.fields)
            assert [type(v) for v in a.fields.values()] == [type(v) for v in b.fields.values()]
            assert a.width == b.width
            for x, y in ((a.counts, b.counts), ((a.memory,), (b.memory,))):
                assert (x is None) == (y is None)
                if x is not None:
                    assert all(np.array_equal(p, q) and p.dtype == q.dtype for p, q in zip(x, y))
        assert back.to_result().get_statevector(6) == result.get_statevector(6)
        assert back.to_result().get_counts(5) == result.get_counts(5)
    assert exps[5].counts[0].ndim == 2  # 70 clbits: packed rows, outside the pools
    # a histogram read on its own (counts and header only) is the one the whole experiment gives
    exps[3].fields["header"] = dict(exps[3].fields["header"], creg_sizes=[["a", 2], ["b", 3]])
    del exps[4].fields["header"]
    record.experiments = exps[:5]
    pooled = PooledRecord(wire.encode_record(record))
    read_alone = 0
    for k, exp in enumerate(exps[:5]):
        alone = pooled.counts_and_header(k)
        if alone is not None:
            read_alone += 1
            keys, values, header = alone
            assert repr(header) == repr(exp.header)  # (NaN in a header: not ==)
            assert np.array_equal(keys, exp.counts[0]) and np.array_equal(values, exp.counts[1])
        assert pooled._experiments is None  # nothing decoded and kept
    assert read_alone == 4  # experiment 4 has no header: read whole


def test_a_live_set_holds_each_result_once_as_bytes(tmp_path, make_circuits):
    backend = TrackedBackend()
    job_set = qjm.JobManager(store=tmp_path / "s.sqlite").run(
        make_circuits(8), backend=backend, max_experiments_per_job=2, shots=50, seed_simulator=1
    )
    results = job_set.results(timeout=60)
    gc.collect()
    # the backend's jobs (each holding its whole Result) are let go once kept
    assert backend.jobs_made and all(ref() is None for ref in backend.jobs_made)
    records = [mj.outcome.record for mj in job_set.managed_jobs()]
    assert all(isinstance(r, PooledRecord) and r._experiments is None for r in records)
    reference = AerSimulator().run(make_circuits(8)[:2], shots=50, seed_simulator=1).result()
    assert results.get_counts(1) == reference.get_counts(1)
    # a histogram read once is decoded for that read and not kept; other reads keep theirs
    assert records[0]._experiments is None
    assert results.data(1) == reference.data(1)
    assert records[0]._experiments[1] is not None and records[1]._experiments is None
    assert results.get_counts(1) == reference.get_counts(1)
    # asked for, the jobs come back: KeptJob stand-ins (this backend cannot look jobs up)
    jobs = job_set.jobs()
    assert [j.job_id() for j in jobs] == [mj.job_id for mj in job_set.managed_jobs()]
    assert jobs[0].status() == JobStatus.DONE and jobs[0].result().get_counts(
        1
    ) == reference.get_counts(1)
    assert job_set.job(1) == (jobs[0], 1)


def test_a_job_held_elsewhere_is_given_back_itself(tmp_path, make_circuits):
    backend = TrackedBackend()
    job_set = qjm.JobManager(store=tmp_path / "s.sqlite").run(
        make_circuits(4), backend=backend, max_experiments_per_job=2, shots=20
    )
    deadline = time.monotonic() + 60
    while len(backend.jobs_made) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    mine = [ref() for ref in backend.jobs_made]  # the user keeps the jobs
    job_set.results(timeout=60)
    assert {id(j) for j in job_set.jobs()} == {id(j) for j in mine}


# -- the manager lets finished sets go ------------------------------------------------------------


def test_a_dropped_job_set_is_freed_and_the_manager_keeps_no_finished_set(tmp_path, make_circuits):
    manager = qjm.JobManager(store=tmp_path / "s.sqlite")
    job_set = manager.run(make_circuits(4), backend=AerSimulator(), max_experiments_per_job=2)
    job_set_id = job_set.job_set_id()
    results = job_set.results(timeout=60)
    counts = results.get_counts(3)
    ref = weakref.ref(job_set)
    del job_set, results
    gc.collect()
    assert ref() is None, gc.get_referrers(ref()) if ref() else None
    # still in the store: listed and read back
    (listed,) = manager.job_sets()
    assert listed.job_set_id() == job_set_id
    assert manager.retrieve_job_set(job_set_id) is listed
    assert listed.results().get_counts(3) == counts


def test_the_manager_keeps_a_set_still_running(tmp_path, make_circuits):
    backend = SlowBackend(delay=None, inner=AerSimulator())
    manager = qjm.JobManager(store=tmp_path / "s.sqlite")
    job_set = manager.run(make_circuits(2), backend=backend, max_experiments_per_job=1)
    job_set.jobs()
    ref = weakref.ref(job_set)
    job_set_id = job_set.job_set_id()
    del job_set
    gc.collect()
    assert ref() is not None  # its jobs are not finished: the manager holds it
    backend.release_all()
    again = manager.retrieve_job_set(job_set_id)
    assert again is ref() and again.results(timeout=60).success
    del again
    gc.collect()
    assert ref() is None  # finished: let go


def test_a_memory_store_keeps_its_sets(make_circuits):
    manager = qjm.JobManager(store=":memory:")
    job_set = manager.run(make_circuits(2), backend=AerSimulator())
    job_set.results(timeout=60)
    ref = weakref.ref(job_set)
    del job_set
    gc.collect()
    assert ref() is not None  # nothing else keeps its results
    assert manager.job_sets()[0] is ref()


def _store_tables(conn: sqlite3.Connection) -> dict[str, list[tuple]]:
    names = [
        r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1")
    ]
    return {n: conn.execute(f'SELECT rowid, * FROM "{n}" ORDER BY rowid').fetchall() for n in names}


_SOME = st.one_of(st.text(max_size=3), st.integers(-2, 2), st.binary(max_size=3))
_VALUE = st.integers(0, 40).flatmap(lambda r: st.none() if r == 0 else _SOME)  # None at times


@given(data=st.data())
@settings(max_examples=80, deadline=None)
def test_a_transaction_through_the_writes_view_writes_what_its_statements_write(data):
    """The writer makes a transaction of a job's writes (job rows and intents, timings, kept
    states, history, results, the journal) one INSERT on a view whose trigger makes each row
    its own write: the tables end as the statements themselves leave them, in their order (an
    upsert, a REPLACE, an IGNORE, a refused row), for any mix of them."""
    writes = [store_module._INTENT_ROW, *store_module._DISPATCHED]
    groups = []
    for _ in range(data.draw(st.integers(1, 6))):
        statements = []
        for _ in range(data.draw(st.integers(1, 4))):
            sql = data.draw(st.sampled_from(writes))
            width = sql.count("?")
            rows = data.draw(
                st.lists(
                    st.tuples(st.sampled_from(["s1", "s2"]), st.integers(0, 3)).flatmap(
                        lambda key, w=width: st.tuples(
                            st.just(key), st.lists(_VALUE, min_size=w - 2, max_size=w - 2)
                        )
                    ),
                    min_size=1,
                    max_size=5,
                )
            )
            statements.append((sql, [(k[0], k[1], *rest) for k, rest in rows]))
        groups.append(statements)
    outcomes = []
    for through_view in (True, False):
        conn = sqlite3.connect(":memory:", isolation_level=None)
        conn.executescript(store_module._SCHEMA)
        conn.executescript(store_module._DISPATCH_SCRIPT)
        try:
            conn.execute("BEGIN IMMEDIATE")
            if through_view:
                for chunk in store_module._dispatched(groups):
                    conn.execute(*chunk)
            else:
                for statements in groups:
                    for sql, rows in statements:
                        conn.executemany(sql, rows)
            conn.execute("COMMIT")
            outcomes.append(_store_tables(conn))
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            outcomes.append(type(exc).__name__)
    event("written" if isinstance(outcomes[0], dict) else "refused")
    assert outcomes[0] == outcomes[1]
