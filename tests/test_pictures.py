"""Pictures and the notebook view: histograms and the jobs' timeline drawn to PNG (Agg), the
timings they are drawn from (kept in the store, read by ``qjm show --plot`` in another
process), and the escaped HTML of ``_repr_html_``."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from concurrent import futures

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib  # noqa: E402 - a test dependency (qjm[test] includes qjm[plot])

matplotlib.use("Agg")

import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from conftest import _make_circuits  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from qiskit.exceptions import QiskitError  # noqa: E402
from qiskit.providers import JobStatus  # noqa: E402
from qiskit_aer import AerSimulator  # noqa: E402
from servers import child_env  # noqa: E402

import qjm  # noqa: E402
from qjm.plots import OUTCOME_COLORS  # noqa: E402
from qjm.testing import PartialFailBackend, SlowBackend, SubmitFailBackend  # noqa: E402

NAME = "<script>alert('x')</script>"
EVIL = "<img src=x onerror=alert(1)>"  # a circuit name: it reaches the error of its job
FAILING = "c6"  # fails inside job 1 (experiments 4-7)


def _circuits() -> list:
    circuits = _make_circuits(20)
    circuits[17].name = EVIL  # job 4 (experiments 16-19) is refused at submission
    return circuits


KEYS = ("submitted", "running", "finished", "kept")
DELAY = 0.6  # each job: QUEUED for half of it, RUNNING for the other half


def _backend(delay: float = DELAY):
    return SubmitFailBackend(
        fail_names={EVIL},
        inner=PartialFailBackend(
            fail_names={FAILING}, inner=SlowBackend(delay=delay, inner=AerSimulator())
        ),
    )


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """One job set on Aer behind fault-injecting backends, in a store file: 5 jobs of 4
    experiments; job 1 fails (an experiment fails), job 4 is refused at submission."""
    store = tmp_path_factory.mktemp("store") / "s.sqlite"
    manager = qjm.JobManager(store=store)
    job_set = manager.run(
        _circuits(), backend=_backend(), name=NAME, max_experiments_per_job=4, shots=100
    )
    results = job_set.results(timeout=120)
    yield manager, job_set, results, store
    manager.shutdown()


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")  # qiskit's plot_histogram draws through pyplot


def assert_png(path, min_side: int = 200) -> tuple[int, int]:
    """``path`` is a PNG that decodes, at least ``min_side`` pixels each way; its size."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:8]
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= min_side and height >= min_side, (width, height)
    assert width <= 5000 and height <= 5000, (width, height)
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[:2] == (height, width)
    assert pixels.std() > 0.01  # not a blank picture
    return width, height


def rgb(outcome: str) -> tuple:
    return to_rgba(OUTCOME_COLORS[outcome])[:3]


def bars(fig) -> dict[int, dict[str, tuple]]:
    """The timeline's bars: job index -> segment -> face colour (RGB)."""
    out: dict[int, dict[str, tuple]] = {}
    for patch in fig.axes[0].patches:
        gid = patch.get_gid() or ""
        if gid.startswith("qjm-job-"):
            index, segment = gid[len("qjm-job-") :].split("-", 1)
            out.setdefault(int(index), {})[segment] = tuple(patch.get_facecolor())[:3]
    return out


# -- histograms ---------------------------------------------------------------------------------


def test_histogram_of_an_experiment_is_its_counts_as_png(ran, tmp_path):
    _manager, _job_set, results, _store = ran
    assert not results.success and results.missing() == list(range(4, 8)) + list(range(16, 20))
    counts = results.get_counts("c2")
    path = tmp_path / "h.png"
    fig = results.plot_histogram("c2", path=path)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert_png(path)
    ax = fig.axes[0]
    assert ax.get_title() == "c2"
    heights = sorted(round(p.get_height()) for p in ax.patches)
    assert heights == sorted(counts.values()) and sum(heights) == 100
    labels = {t.get_text() for t in ax.get_xticklabels()}
    assert labels == set(counts)  # register spacing as get_counts gives it ("b a")
    assert all(" " in label for label in labels)
    # the same experiment by global index, and qiskit's filename=
    other = tmp_path / "h2.png"
    fig2 = results.plot_histogram(2, filename=other, title="by index")
    assert_png(other)
    assert fig2.axes[0].get_title() == "by index"
    assert sorted(round(p.get_height()) for p in fig2.axes[0].patches) == heights


def test_histogram_of_several_experiments_has_a_legend_and_missing_ones_raise(ran, tmp_path):
    _manager, _job_set, results, _store = ran
    fig = results.plot_histogram(["c0", "c9"], path=tmp_path / "two.png")
    assert_png(tmp_path / "two.png")
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["c0", "c9"]
    total = sum(p.get_height() for p in fig.axes[0].patches)
    assert round(total) == 200  # both experiments' 100 shots
    with pytest.raises(qjm.ManagedResultDataNotAvailable):
        results.plot_histogram(FAILING)
    with pytest.raises(qjm.JobManagerJobNotFound):
        results.plot_histogram("no-such-circuit")


def test_histogram_of_a_sampler_pub(tmp_path, manager):
    from qiskit import QuantumCircuit
    from qiskit_aer.primitives import SamplerV2

    qc = QuantumCircuit(2)
    qc.h(0)
    qc.cx(0, 1)
    qc.measure_all()
    res = manager.run([qc, qc], sampler=SamplerV2(seed=3), shots=300).results(timeout=120)
    counts = res.get_counts(1)
    fig = res.plot_histogram(1, register="meas", path=tmp_path / "pub.png")
    assert_png(tmp_path / "pub.png")
    assert sorted(round(p.get_height()) for p in fig.axes[0].patches) == sorted(counts.values())
    assert set(counts) == {"00", "11"}
    assert fig.axes[0].get_title() == "PUB 1, register meas"
    with pytest.raises(QiskitError, match="no register 'nope'"):
        res.plot_histogram(0, register="nope")
    html = res._repr_html_()
    assert "ManagedPrimitiveResults" in html and "2 (2 available)" in html
    assert ">300<" in html  # shots of each PUB


def test_histogram_of_an_estimator_pub_is_refused(manager):
    from qiskit import QuantumCircuit
    from qiskit.primitives import StatevectorEstimator
    from qiskit.quantum_info import SparsePauliOp

    qc = QuantumCircuit(1)
    qc.h(0)
    res = manager.run([(qc, SparsePauliOp("Z"))], estimator=StatevectorEstimator()).results(
        timeout=120
    )
    with pytest.raises(QiskitError, match="no BitArray"):
        res.plot_histogram(0)
    assert "evs" in res._repr_html_()


def test_pictures_without_matplotlib_say_what_to_install(ran, monkeypatch, tmp_path):
    _manager, job_set, results, store = ran
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r'pip install "qjm\[plot\]"'):
        results.plot_histogram("c2")
    with pytest.raises(ImportError, match="pip install matplotlib"):
        job_set.plot_timeline()
    from qjm.cli import main

    target = tmp_path / "never.png"
    code = main(["--store", str(store), "show", job_set.job_set_id(), "--plot", str(target)])
    assert code == 2 and not target.exists()


# -- the timeline -------------------------------------------------------------------------------


def test_jobs_record_their_times_in_order(ran):
    _manager, job_set, _results, _store = ran
    jobs = job_set.managed_jobs()
    for mj in jobs[:4]:
        t = mj.times
        assert {"submitted", "finished", "kept"} <= set(t) <= set(KEYS), (mj.index, t)
        assert job_set._created <= t["submitted"] <= t["finished"] <= t["kept"]
        if "running" in t:  # seen by a poll in its running half (a slow poll may miss it)
            assert t["submitted"] + 0.4 * DELAY <= t["running"] <= t["finished"]
        # SlowBackend holds a job DELAY s, half of it queued
        assert t["finished"] - t["submitted"] >= 0.8 * DELAY
    assert any("running" in mj.times for mj in jobs[:4])
    assert jobs[4].times == {}  # refused at submission: no attempt ran
    assert jobs[4].history and jobs[4].history[-1][2].startswith("submit: RuntimeError")


def test_timeline_has_one_bar_per_job_coloured_by_outcome(ran, tmp_path):
    _manager, job_set, _results, _store = ran
    path = tmp_path / "timeline.png"
    fig = job_set.plot_timeline(path)
    assert isinstance(fig, matplotlib.figure.Figure)
    width, height = assert_png(path)
    assert width > height  # a wide picture, one row per job
    found = bars(fig)
    assert sorted(found) == [0, 1, 2, 3, 4]
    green, red = rgb("done"), rgb("failed")
    jobs = job_set.managed_jobs()
    for index in (0, 2, 3):
        # queued, then running when a poll saw it running; its result kept after
        expected = {"queued", "running"} if "running" in jobs[index].times else {"running"}
        assert expected <= set(found[index]) <= expected | {"fetch"}, found[index]
        assert found[index]["running"] == green
    assert found[1]["running"] == red
    assert set(found[4]) == {"not-submitted"}
    # the refused submission is marked on job 4's row
    marks = [c for c in fig.axes[0].collections if c.get_gid() == "qjm-failures"]
    assert len(marks) == 1 and [round(y) for _x, y in marks[0].get_offsets()] == [4]
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert {"done", "failed", "not submitted", "attempt failed"} <= set(legend)
    assert "3 done, 1 failed, 1 not submitted" in fig.axes[0].get_title()
    assert NAME in fig.axes[0].get_title()  # as text (never read as mathtext)


def test_timeline_shows_retries_and_a_running_job(tmp_path):
    backend = SlowBackend(delay=None, inner=AerSimulator())  # held until released
    fails = PartialFailBackend(fail_names={"c1"}, inner=backend)
    manager = qjm.JobManager(store=tmp_path / "s.sqlite")
    try:
        job_set = manager.run(_make_circuits(4), backend=fails, max_experiments_per_job=2)
        with pytest.raises(qjm.JobManagerTimeoutError):
            job_set.results(timeout=0.3)
        fig = job_set.plot_timeline()
        # held: queued (never seen running) up to now, in the colour of unfinished jobs
        assert bars(fig) == {
            0: {"queued": rgb("still running")},
            1: {"queued": rgb("still running")},
        }
        backend.release_all()
        job_set.results(timeout=60)
        fails.fail_names = frozenset()
        assert job_set.retry_failed() == [0]
        job_set.jobs()  # waits until job 0 is submitted again
        backend.release_all()
        job_set.results(timeout=60)
        fig = job_set.plot_timeline(tmp_path / "retried.png")
        assert_png(tmp_path / "retried.png")
        found = bars(fig)
        green = rgb("done")
        assert found[0]["running"] == green and found[1]["running"] == green
        assert "earlier" in found[0] and "earlier" not in found[1]  # job 0 ran twice
        again = [c for c in fig.axes[0].collections if c.get_gid() == "qjm-retries"]
        assert len(again) == 1 and [round(y) for _x, y in again[0].get_offsets()] == [0]
    finally:
        manager.shutdown()


def test_timings_are_written_with_the_job_row_not_per_poll(tmp_path, monkeypatch):
    from qjm.managedjob import ManagedJob

    looks = []
    saw = ManagedJob.saw
    monkeypatch.setattr(
        ManagedJob, "saw", lambda mj, status: looks.append(status) or saw(mj, status)
    )
    manager = qjm.JobManager(store=tmp_path / "s.sqlite")
    store = manager._store
    writes: list[str] = []
    plain = store._write_all

    def counting(statements):
        writes.extend(sql for sql, _ in statements)
        return plain(statements)

    store._write_all = counting
    try:
        job_set = manager.run(
            _make_circuits(2), backend=SlowBackend(delay=1.0, inner=AerSimulator()), shots=10
        )
        job_set.results(timeout=60)
        mj = job_set.managed_jobs()[0]
        assert mj.status() == JobStatus.DONE
        assert {"submitted", "finished", "kept"} <= set(mj.times)
    finally:
        manager.shutdown()
    # one job, polled many times over a second: its timings were written twice (when it was
    # submitted and when its result was kept), each with its job row
    assert len(looks) >= 5 and looks[-1] == JobStatus.DONE
    timed = [sql for sql in writes if "job_times" in sql]
    rows = [sql for sql in writes if sql.startswith("INSERT INTO jobs VALUES (?, ?, ?, ?, ?) ON")]
    assert len(timed) == 2 and len(rows) == 2, writes


def test_timings_survive_in_the_store_and_qjm_show_plots_them(ran, tmp_path):
    _manager, job_set, _results, store = ran
    again = qjm.JobManager(store=store).retrieve_job_set(job_set.job_set_id())
    assert [mj.times for mj in again.managed_jobs()] == [mj.times for mj in job_set.managed_jobs()]
    expected = {i: sorted(b) for i, b in bars(job_set.plot_timeline()).items()}
    assert {i: sorted(b) for i, b in bars(again.plot_timeline()).items()} == expected

    # in another process, from the store alone
    env = child_env()
    env["MPLBACKEND"] = "Agg"
    env["QJM_HOME"] = str(tmp_path / "home")
    target = tmp_path / "shown.png"
    proc = subprocess.run(
        [sys.executable, "-m", "qjm.cli", "--store", str(store), "show"]
        + [job_set.job_set_id(), "--plot", str(target)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"Timeline written to {target}" in proc.stdout
    assert "Failed jobs: 2" in proc.stdout
    assert_png(target)


def test_a_store_without_the_timings_table_gains_it(tmp_path):
    import sqlite3

    path = tmp_path / "s.sqlite"
    manager = qjm.JobManager(store=path)
    job_set = manager.run(_make_circuits(2), backend=AerSimulator(), shots=10)
    job_set.results(timeout=60)
    manager.shutdown()
    manager._store.close()
    conn = sqlite3.connect(path)  # a schema-3 store from before the timings
    conn.execute("DROP TABLE job_times")
    conn.commit()
    conn.close()
    again = qjm.JobManager(store=path).retrieve_job_set(job_set.job_set_id())
    assert [mj.times for mj in again.managed_jobs()] == [{}]
    fig = again.plot_timeline()  # drawn from the attempt history alone
    assert sorted(bars(fig)) == [0]
    conn = sqlite3.connect(path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert "job_times" in tables


# -- the notebook view --------------------------------------------------------------------------


def test_job_set_html_counts_failures_and_escapes_everything(ran):
    _manager, job_set, _results, _store = ran
    html = job_set._repr_html_()
    assert "<script" not in html and "<img" not in html and "onerror=alert(1)>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html  # the name, escaped
    assert job_set.job_set_id() in html
    assert "3 DONE, 1 ERROR, 1 NOT SUBMITTED" in html
    assert "5 of 5 jobs final (100%)" in html
    assert "Failed jobs</b> (2)" in html
    # the refused job is named with its error; the circuit name in the error is escaped
    assert "experiments 16-19" in html
    assert "submit refused: batch contains &#x27;&lt;img src=x onerror=alert(1)&gt;&#x27;" in html
    assert "experiments 4-7" in html and "job ended as ERROR" in html
    assert "Slowest jobs" in html


def test_job_set_html_asks_the_backend_nothing(tmp_path, manager):
    backend = SlowBackend(delay=None, inner=AerSimulator())
    job_set = manager.run(_make_circuits(6), backend=backend, max_experiments_per_job=2)
    with pytest.raises(qjm.JobManagerTimeoutError):
        job_set.results(timeout=0.2)
    futures.wait([mj.fetch_future for mj in job_set.managed_jobs() if mj.fetch_future])
    asked = []
    for mj in job_set.managed_jobs():
        plain = mj.job.status
        mj.job.status = lambda plain=plain: asked.append(1) or plain()
    html = job_set._repr_html_()
    assert asked == []
    assert "3 QUEUED" in html and "0 of 3 jobs final (0%)" in html
    assert "so far" in html  # unfinished jobs among the slowest, timed up to now
    backend.release_all()
    job_set.results(timeout=60)
    assert "3 DONE" in job_set._repr_html_()


def test_results_html_shows_experiments_shots_and_missing_ones(ran):
    _manager, _job_set, results, _store = ran
    html = results._repr_html_()
    assert "ManagedResults" in html
    assert "20 (12 available)" in html
    assert ">100<" in html  # shots
    assert ">False<" in html  # success
    assert "Missing experiments</b> (8)" in html
    assert ">c6<" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "<img" not in html
    assert "and 0 more" not in html
    partial = _job_set.results(partial=True)._repr_html_()
    assert "20 (15 available)" in partial and "Missing experiments</b> (5)" in partial
