"""The notebook view: HTML summaries of job sets and results (their ``_repr_html_``).

Built from what qjm already knows (kept outcomes, the last status a look found, the store): no
backend call, no waiting. Every value that comes from a user or a backend (names, tags, job ids,
error messages, experiment names) is escaped, so the HTML is safe to render anywhere; it holds no
script and no external resource.
"""

from __future__ import annotations

import html
import time
from collections import Counter
from typing import Any

import numpy as np

from qjm.plots import (
    CANCELLED,
    DONE,
    FAILED,
    NOT_SUBMITTED,
    OUTCOME_COLORS,
    RUNNING,
    job_outcome,
)

SLOWEST = 5  # jobs listed as the slowest
LISTED = 10  # failed jobs, missing experiments, ... listed before "and N more"
PREVIEW = 5  # experiments / PUBs previewed
_ERROR_CHARS = 400  # an error message longer than this is cut

_STYLE = {
    "box": "font-family:sans-serif;font-size:13px;line-height:1.4;max-width:960px",
    "table": "border-collapse:collapse;margin:4px 0 8px 0",
    "th": "text-align:left;padding:2px 10px 2px 0;border-bottom:1px solid #bbb;font-weight:600",
    "td": "text-align:left;padding:2px 10px 2px 0;vertical-align:top",
    "key": "text-align:right;padding:1px 10px 1px 0;color:#555;vertical-align:top",
}
_ORDER = (
    "DONE",
    "ERROR",
    "CANCELLED",
    "RUNNING",
    "QUEUED",
    "VALIDATING",
    "INITIALIZING",
    "SUBMITTED",
    "NOT SUBMITTED",
    "UNCERTAIN",
    "UNKNOWN",
)


def esc(value: Any) -> str:
    """``value`` as text, escaped for HTML (quotes too)."""
    return html.escape(str(value), quote=True)


def _cut(text: str, limit: int = _ERROR_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _kv(rows: list[tuple[str, str]]) -> str:
    """A two-column table of (label, already escaped HTML)."""
    body = "".join(
        f'<tr><td style="{_STYLE["key"]}">{esc(k)}</td><td style="{_STYLE["td"]}">{v}</td></tr>'
        for k, v in rows
    )
    return f'<table style="{_STYLE["table"]}">{body}</table>'


def _table(headers: list[str], rows: list[list[str]], more: int = 0) -> str:
    """A table of already escaped cells; ``more``: rows left out."""
    head = "".join(f'<th style="{_STYLE["th"]}">{esc(h)}</th>' for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td style="{_STYLE["td"]}">{c}</td>' for c in row) + "</tr>"
        for row in rows
    )
    tail = f'<div style="color:#555">and {more} more</div>' if more > 0 else ""
    return f'<table style="{_STYLE["table"]}"><tr>{head}</tr>{body}</table>{tail}'


def _badge(ok: bool) -> str:
    color = OUTCOME_COLORS[DONE] if ok else OUTCOME_COLORS[FAILED]
    return f'<b style="color:{color}">{esc(ok)}</b>'


def _seconds(value: float) -> str:
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


# -- job sets -----------------------------------------------------------------------------------


def known_status(mj: Any) -> str:
    """A job's status as qjm last knew it (no backend call): a ``JobStatus`` name, or
    ``SUBMITTED`` (not looked at since), ``NOT SUBMITTED``, ``UNCERTAIN``, ``UNKNOWN``."""
    if mj.outcome is not None:
        return mj.outcome.status.name
    if not mj.submitted.is_set():
        return "INITIALIZING"
    if mj.job is None:
        if mj.stored_status is not None:
            return mj.stored_status.name
        if mj.uncertain:
            return "UNCERTAIN"
        return "NOT SUBMITTED" if mj.job_id is None else "UNKNOWN"
    if mj.seen_status is not None:
        return mj.seen_status.name
    return "SUBMITTED"


def _progress(outcomes: list[str]) -> str:
    """A bar of the jobs that are final, one colour per outcome, and its caption."""
    n = len(outcomes)
    counts = Counter(outcomes)
    final = n - counts[RUNNING]
    parts = []
    for outcome in (DONE, FAILED, CANCELLED, NOT_SUBMITTED):
        if counts[outcome]:
            width = 100.0 * counts[outcome] / n
            parts.append(
                f'<div title="{esc(counts[outcome])} {esc(outcome)}" style="width:{width:.3f}%;'
                f'background:{OUTCOME_COLORS[outcome]}"></div>'
            )
    bar = (
        '<div style="display:flex;width:360px;height:12px;background:#e6e6e6;'
        'border-radius:3px;overflow:hidden;margin:2px 0">' + "".join(parts) + "</div>"
    )
    caption = f"{final} of {n} jobs final ({100.0 * final / n if n else 100.0:.0f}%)"
    return (
        '<div style="display:flex;align-items:center;gap:8px">'
        f"{bar}<span>{esc(caption)}</span></div>"
    )


def job_set_html(job_set: Any) -> str:
    """The HTML summary of a :class:`~qjm.ManagedJobSet`: name, id, backend, jobs by status, a
    progress bar of final jobs, the slowest jobs and the failed ones with their errors."""
    job_set._ensure_loaded()  # a retrieved set: its kept outcomes, from the store
    jobs = list(job_set._managed)
    labels = [known_status(mj) for mj in jobs]
    outcomes = [job_outcome(mj) for mj in jobs]
    by_status = Counter(labels)
    order = [s for s in _ORDER if s in by_status] + sorted(set(by_status) - set(_ORDER))
    status_text = ", ".join(f"{by_status[s]} {s}" for s in order) or "no jobs"
    layout = job_set._layout
    work = (
        f"{len(layout['shapes'])} PUBs ({job_set._kind_name}) in {job_set._plan.n_experiments} "
        "pieces"
        if layout is not None
        else f"{job_set._plan.n_experiments} experiments"
    )
    rows = [
        ("name", f"<b>{esc(job_set.name() or '-')}</b>"),
        ("id", f"<code>{esc(job_set.job_set_id())}</code>"),
        ("backend", esc(job_set.backend_name() or "-")),
        ("work", esc(work) + f" in {len(jobs)} jobs"),
        ("created", esc(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job_set._created)))),
        ("jobs", esc(status_text)),
        ("progress", _progress(outcomes)),
    ]
    if job_set.tags():
        rows.insert(3, ("tags", esc(", ".join(job_set.tags()))))
    parts = [f'<div style="{_STYLE["box"]}"><b>ManagedJobSet</b>', _kv(rows)]

    now = time.time()
    timed = []
    for mj, outcome in zip(jobs, outcomes):
        start = mj.times.get("submitted")
        if start is None:
            continue
        end = mj.times.get("kept") or mj.times.get("finished")
        if end is None and outcome != RUNNING:
            continue  # final, but when is not known
        timed.append((max((end or now) - start, 0.0), end is None, mj))
    timed.sort(key=lambda item: -item[0])
    if timed:
        cells = [
            [
                esc(mj.index),
                esc(job_set._items(mj)),
                f"<code>{esc(mj.job_id or '-')}</code>",
                esc(known_status(mj)),
                esc(_seconds(seconds) + (" so far" if unfinished else "")),
            ]
            for seconds, unfinished, mj in timed[:SLOWEST]
        ]
        parts.append("<b>Slowest jobs</b> (submission to result kept)")
        parts.append(_table(["job", "runs", "job id", "status", "time"], cells))

    failed = [(mj, mj.error_message()) for mj in jobs]
    failed = [(mj, message) for mj, message in failed if message]
    if failed:
        cells = [
            [
                esc(mj.index),
                esc(job_set._items(mj)),
                f"<code>{esc(mj.job_id or '-')}</code>",
                f'<span style="color:{OUTCOME_COLORS[FAILED]}">{esc(_cut(message))}</span>',
            ]
            for mj, message in failed[:LISTED]
        ]
        parts.append(f"<b>Failed jobs</b> ({len(failed)})")
        parts.append(_table(["job", "runs", "job id", "error"], cells, more=len(failed) - LISTED))
    parts.append(
        '<div style="color:#777;font-size:11px">statuses as qjm last saw them; '
        "results() fetches, statuses() asks the backend</div></div>"
    )
    return "".join(parts)


# -- results ------------------------------------------------------------------------------------


def _shots(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _range_text(values: list[int]) -> str:
    if not values:
        return "-"
    low, high = min(values), max(values)
    return f"{low:,}" if low == high else f"{low:,} to {high:,}"


def results_html(results: Any) -> str:
    """The HTML summary of :class:`~qjm.ManagedResults`: experiments, shots, success, the
    missing experiments and a preview of the first ones."""
    plan, records, available = results._plan, results._records, results._available
    names = results._index.names
    n = len(results)
    shots = [0] * n
    for spec, record in zip(plan.jobs, records):
        if record is None:
            continue
        for k, experiment in enumerate(record.experiments[: spec.stop - spec.start]):
            shots[spec.start + k] += _shots(experiment.fields.get("shots"))
    missing = results.missing()
    rows = [
        ("job set", f"<code>{esc(results.job_set_id)}</code>"),
        ("backend", esc(results.backend_name or "-")),
        ("experiments", esc(f"{n:,} ({n - len(missing):,} available)")),
        ("shots", esc(_range_text([s for s, ok in zip(shots, available) if ok]))),
        ("success", _badge(results.success)),
    ]
    if results._partial:
        rows.append(("partial", esc("True (experiments that succeeded inside failed jobs)")))
    parts = [f'<div style="{_STYLE["box"]}"><b>ManagedResults</b>', _kv(rows)]
    if missing:
        cells = [[esc(i), esc(names[i]), esc(plan.locate(i)[0])] for i in missing[:LISTED]]
        parts.append(f"<b>Missing experiments</b> ({len(missing):,})")
        parts.append(_table(["index", "name", "job"], cells, more=len(missing) - LISTED))
    preview = np.flatnonzero(available)[:PREVIEW].tolist()
    if preview:
        cells = []
        for i in preview:
            try:
                counts = results.get_counts(i)
                top = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
                text = ", ".join(f"{k}: {v}" for k, v in top) + (", …" if len(counts) > 3 else "")
            except Exception:  # noqa: BLE001 - no counts (a statevector, level-1 data...)
                text = "-"
            cells.append([esc(i), esc(names[i]), esc(f"{shots[i]:,}"), esc(text)])
        parts.append("<b>First experiments</b>")
        parts.append(_table(["index", "name", "shots", "most frequent"], cells))
    parts.append("</div>")
    return "".join(parts)


def primitive_results_html(results: Any) -> str:
    """The HTML summary of :class:`~qjm.ManagedPrimitiveResults`: PUBs, shots, success, the
    missing PUBs (with their jobs' errors) and a preview of the first ones."""
    n = len(results)
    missing = results.missing()
    shots: dict[int, int] = {}
    kinds: set[str] = set()
    for i in range(n):
        where = results._where(i)
        if where is None:
            continue
        first = where[0][0]
        kinds.add(first.result_type)
        if first.bits:
            name = next(iter(first.bits))
            shots[i] = sum(int(part.bits[name][0].shape[-2]) for part in where[0])
    rows = [
        ("job set", f"<code>{esc(results.job_set_id)}</code>"),
        ("primitive", esc(results.backend_name or "-")),
        ("PUBs", esc(f"{n:,} ({n - len(missing):,} available)")),
    ]
    if shots:
        rows.append(("shots", esc(_range_text(list(shots.values())))))
    rows.append(("success", _badge(results.success)))
    parts = [f'<div style="{_STYLE["box"]}"><b>ManagedPrimitiveResults</b>', _kv(rows)]
    if missing:
        cells = []
        for i in missing[:LISTED]:
            jobs = sorted({j for j, _ in results._jobs_of(i)})
            why = "; ".join(f"job {j}: {results._errors.get(j) or 'no result'}" for j in jobs[:3])
            cells.append([esc(i), esc(", ".join(map(str, jobs))), esc(_cut(why))])
        parts.append(f"<b>Missing PUBs</b> ({len(missing):,})")
        parts.append(_table(["PUB", "jobs", "why"], cells, more=len(missing) - LISTED))
    gone = set(missing)
    preview = [i for i in range(n) if i not in gone][:PREVIEW]
    if preview:
        cells = []
        for i in preview:
            record = results._record(i)
            fields = ", ".join(record.order) or "-"
            cells.append(
                [
                    esc(i),
                    esc(record.shape),
                    esc(fields),
                    esc(f"{shots[i]:,}" if i in shots else "-"),
                ]
            )
        parts.append("<b>First PUBs</b>")
        parts.append(_table(["PUB", "shape", "data", "shots"], cells))
    parts.append("</div>")
    return "".join(parts)
