"""Pictures of job sets and results: histograms of counts, and a timeline of a set's jobs.

Needs matplotlib, the optional extra ``qjm[plot]``; importing this module does not import it.
Every function returns a ``matplotlib.figure.Figure``. The timeline is built on a bare ``Figure``
(not through ``pyplot``), so it is shown once in a notebook and never kept open by pyplot; the
histograms are qiskit's ``plot_histogram``, as qiskit draws them.
"""

from __future__ import annotations

import time
from typing import Any

from qiskit.providers import JobStatus
from qiskit.providers.jobstatus import JOB_FINAL_STATES

_INSTALL = 'pip install "qjm[plot]" (or: pip install matplotlib)'

# what a job ended as, by what qjm knows (no backend call): its colour on the timeline
DONE, FAILED, CANCELLED, NOT_SUBMITTED, RUNNING = (
    "done",
    "failed",
    "cancelled",
    "not submitted",
    "still running",
)
OUTCOME_COLORS = {
    DONE: "#2e9e44",
    FAILED: "#d62728",
    CANCELLED: "#8c8c8c",
    NOT_SUBMITTED: "#9467bd",
    RUNNING: "#1f77b4",
}
_EARLIER = "#c7c7c7"  # earlier attempts of a job submitted again


def require_matplotlib() -> Any:
    """The ``matplotlib`` module.

    Raises:
        ImportError: matplotlib is not installed; the message says how to install it.
    """
    try:
        import matplotlib
        import matplotlib.figure  # noqa: F401 - the timeline's Figure
    except ImportError as exc:
        raise ImportError(f"qjm's pictures need matplotlib: {_INSTALL}") from exc
    return matplotlib


def job_outcome(mj: Any) -> str:
    """What a :class:`~qjm.managedjob.ManagedJob` ended as, from what qjm knows (its kept
    outcome, the last status seen, the store): one of ``done``, ``failed``, ``cancelled``,
    ``not submitted`` and ``still running`` (unfinished, or not known to have finished). Asks
    the backend nothing."""
    status = mj.outcome.status if mj.outcome is not None else None
    if status is None and mj.seen_status in JOB_FINAL_STATES:
        status = mj.seen_status  # final, but its result is not kept (yet)
    if status is None and mj.stored_status in JOB_FINAL_STATES:
        status = mj.stored_status
    if status == JobStatus.DONE:
        ok = mj.outcome.ok if mj.outcome is not None else not mj.fetch_error
        return DONE if ok else FAILED
    if status == JobStatus.ERROR:
        return FAILED
    if status == JobStatus.CANCELLED:
        return CANCELLED
    if mj.job is None and mj.submitted.is_set() and (mj.submit_error or mj.job_id is None):
        return NOT_SUBMITTED
    return RUNNING


def _plain(text: Any) -> str:
    """``text`` shown as it is where matplotlib would read ``$...$`` as mathtext."""
    return str(text).replace("$", r"\$")


# -- histograms ---------------------------------------------------------------------------------


def histogram(counts: Any, title: str | None = None, path: Any = None, **kwargs: Any) -> Any:
    """qiskit's ``plot_histogram`` of ``counts`` (a dict, or a list of dicts to compare); saved
    to ``path`` (or qiskit's ``filename``) when given. Returns the Figure."""
    require_matplotlib()
    from qiskit.visualization import plot_histogram

    path = kwargs.pop("filename", None) if path is None else path
    title = kwargs.pop("title", None) if title is None else title
    if kwargs.get("legend") is not None:  # names are text, not mathtext
        kwargs["legend"] = [_plain(label) for label in kwargs["legend"]]
    ax = kwargs.get("ax")
    fig = plot_histogram(counts, **kwargs)
    if fig is None and ax is not None:  # qiskit returns None when drawing into a given ax
        fig = ax.get_figure()
    if title is not None:
        (ax if ax is not None else fig.axes[0]).set_title(str(title), parse_math=False)
    if path is not None:
        fig.savefig(path, bbox_inches="tight")
    return fig


def results_histogram(results: Any, experiment: Any, **kwargs: Any) -> Any:
    """The histogram of an experiment of :class:`~qjm.ManagedResults` (or of several, given as
    a list: one colour each, with a legend). ``experiment`` is what ``get_counts`` takes."""
    require_matplotlib()
    keys = list(experiment) if isinstance(experiment, (list, tuple)) else [experiment]
    if not keys:
        raise ValueError("give an experiment (a name, a global index or a circuit), or a list")
    counts = [results.get_counts(key) for key in keys]
    names = [results._index.names[results._index.resolve(key)] for key in keys]
    if len(keys) > 1:
        kwargs.setdefault("legend", [str(n) for n in names])
        return histogram(counts, **kwargs)
    kwargs.setdefault("title", str(names[0]))
    return histogram(counts[0], **kwargs)


def pub_histogram(results: Any, pub: Any, register: str | None = None, **kwargs: Any) -> Any:
    """The histogram of a sampler PUB of :class:`~qjm.ManagedPrimitiveResults`: its counts over
    every shot and parameter set (of ``register``; None: the only one, or all joined)."""
    require_matplotlib()
    counts = results.get_counts(pub, register=register)
    kwargs.setdefault("title", f"PUB {pub}" + (f", register {register}" if register else ""))
    return histogram(counts, **kwargs)


# -- the timeline -------------------------------------------------------------------------------


def _unit(span: float) -> tuple[str, float]:
    """The time unit of the x axis for a timeline of ``span`` seconds, and its length."""
    if span > 3 * 3600:
        return "hours", 3600.0
    if span > 180:
        return "minutes", 60.0
    return "seconds", 1.0


def _segments(mj: Any, outcome: str, end: float) -> list[tuple[str, float, float]]:
    """(segment, start, stop) of a job's bar, in wall-clock seconds."""
    times = dict(mj.times)  # a look may be adding to it
    submitted = times.get("submitted")
    out = []
    attempts = [when for when, _, _ in mj.history]
    if submitted is None:
        if outcome == NOT_SUBMITTED or not attempts:
            # never submitted: its attempts, if any
            if attempts:
                out.append(("not-submitted", min(attempts), max(attempts)))
            return out
        submitted = min(attempts)
    earlier = [when for when in attempts if when < submitted - 1e-6]
    if earlier:
        out.append(("earlier", min(earlier), submitted))
    running = times.get("running")
    finished = times.get("finished")
    kept = times.get("kept")
    stop = finished if finished is not None else (kept if kept is not None else end)
    if running is not None and running < stop:
        out.append(("queued", submitted, running))
        out.append(("running", running, stop))
    elif finished is None and kept is None and outcome == RUNNING:
        out.append(("queued", submitted, stop))  # not seen running yet
    else:
        out.append(("running", submitted, stop))  # final; not seen running (too short)
    if finished is not None and kept is not None and kept > finished:
        out.append(("fetch", finished, kept))
    return out


def timeline(job_set: Any, path: Any = None, now: float | None = None) -> Any:
    """A timeline of the jobs of a :class:`~qjm.ManagedJobSet`: one row per job, its bar from
    submission through queue (light) and run (full colour) to its result being kept (hatched),
    coloured by what the job ended as; earlier attempts of a job submitted again in grey;
    failed attempts (``x``) and new submissions (``^``) from its history marked. Built from
    what qjm recorded (``ManagedJob.times``, ``ManagedJob.history``): no backend call.

    Every bar carries the gid ``qjm-job-{index}-{segment}`` (segments: ``earlier``,
    ``queued``, ``running``, ``fetch``, ``not-submitted``), so a program can find them.

    Args:
        job_set: the job set.
        path: a file to save the picture to (PNG, SVG, PDF... by its suffix).
        now: where the bars of unfinished jobs end (default: now for a set running in this
            process, the last recorded moment for a retrieved one).

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    require_matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    jobs = job_set.managed_jobs()
    n = len(jobs)
    moments = [job_set._created] + [
        t for mj in jobs for t in [*mj.times.values(), *(h[0] for h in mj.history)]
    ]
    t0 = min(moments)
    if now is None:
        now = max(moments) if job_set._retrieved else time.time()
    outcomes = [job_outcome(mj) for mj in jobs]
    unit, scale = _unit(max(max(moments), now) - t0)
    least = max(max(moments), now, t0 + 1e-3) - t0  # a bar of no length is drawn 1% wide
    height = min(max(2.6, 0.32 * n + 1.6), 24.0)
    fig = Figure(figsize=(9.0, height), layout="constrained")
    ax = fig.add_subplot()
    bar = 0.62
    shown: set[str] = set()
    drawn: set[str] = set()  # the segments drawn
    failed_at: list[tuple[float, int]] = []
    again_at: list[tuple[float, int]] = []
    for mj, outcome in zip(jobs, outcomes):
        color = OUTCOME_COLORS[outcome]
        for segment, start, stop in _segments(mj, outcome, max(now, t0)):
            width = max(stop - start, 0.0)
            if segment == "not-submitted":
                width = max(width, 0.01 * least)
            style: dict[str, Any] = {"color": color, "edgecolor": color, "linewidth": 0.6}
            if segment == "earlier":
                style = {"color": _EARLIER, "edgecolor": "#9a9a9a", "linewidth": 0.6}
            elif segment == "queued":
                style["alpha"] = 0.35
            elif segment == "fetch":
                style.update(color="white", hatch="////")
            elif segment == "not-submitted":
                style.update(color="white", hatch="xxx")
            height_ = bar * (0.45 if segment == "earlier" else 1.0)
            (rect,) = ax.barh(
                mj.index, width / scale, left=(start - t0) / scale, height=height_, **style
            ).patches
            rect.set_gid(f"qjm-job-{mj.index}-{segment}")
            shown.add(outcome)
            drawn.add(segment)
        for when, _job_id, what in mj.history:
            if what is None:
                continue
            target = again_at if what.startswith(("retried", "resumed")) else failed_at
            target.append(((when - t0) / scale, mj.index))
        if outcome == NOT_SUBMITTED and not mj.history:
            ax.annotate(
                "never submitted",
                (0, mj.index),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
                color=OUTCOME_COLORS[NOT_SUBMITTED],
            )
            shown.add(outcome)
    if failed_at:
        xs, ys = zip(*failed_at)
        ax.scatter(xs, ys, marker="x", s=36, color="black", zorder=5, gid="qjm-failures")
    if again_at:
        xs, ys = zip(*again_at)
        ax.scatter(xs, ys, marker="^", s=30, color="#ff7f0e", zorder=5, gid="qjm-retries")
    ax.set_ylim(n - 0.5, -0.5)  # job 0 at the top
    if n <= 40:
        ax.set_yticks(range(n))
        ax.set_yticklabels([f"job {mj.index}" for mj in jobs], fontsize=8)
    ax.set_ylabel("job")
    ax.set_xlabel(f"{unit} since the job set was created")
    ax.set_xlim(left=0)
    ax.grid(axis="x", linestyle=":", linewidth=0.6)
    counts = {o: outcomes.count(o) for o in OUTCOME_COLORS}
    summary = ", ".join(f"{counts[o]} {o}" for o in OUTCOME_COLORS if counts[o])
    ax.set_title(
        f"{job_set.name() or job_set.job_set_id()}: {n} jobs ({summary})",
        fontsize=10,
        parse_math=False,
    )
    handles: list[Any] = [
        Patch(facecolor="white", edgecolor=OUTCOME_COLORS[o], hatch="xxx", label=o)
        if o == NOT_SUBMITTED
        else Patch(color=OUTCOME_COLORS[o], label=o)
        for o in OUTCOME_COLORS
        if o in shown
    ]
    handles += [
        Patch(facecolor="#555555", alpha=0.35, label="queued"),
        Patch(facecolor="#555555", label="running"),
        Patch(facecolor="white", edgecolor="#555555", hatch="////", label="fetching result"),
    ]
    if "earlier" in drawn:
        handles.append(Patch(color=_EARLIER, label="earlier attempts"))
    if failed_at:
        handles.append(
            Line2D([], [], marker="x", color="black", linestyle="", label="attempt failed")
        )
    if again_at:
        handles.append(
            Line2D([], [], marker="^", color="#ff7f0e", linestyle="", label="submitted again")
        )
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
