"""The status page of ``qjm serve`` (``GET /``): one self-contained HTML document, no build step,
no external assets, so it works offline and behind any proxy.

A lab member enters their token; the page keeps it in ``sessionStorage`` (this tab only: never a
cookie, never a URL query string) and polls ``GET /v1/jobs`` every 2 seconds with it in the
``Authorization`` header, so it shows exactly what the REST API gives that token: the user's own
jobs. ``/#token=TOKEN`` also works (a fragment is never sent to the server); the page moves the
token to ``sessionStorage`` and removes the fragment from the address bar at once.

Everything a user wrote (tags, error messages) reaches the document as text nodes
(``textContent``), never as markup; the Content-Security-Policy admits only this page's own
inline script and style (by their SHA-256) and requires Trusted Types, so even a stray
``innerHTML`` could not run markup.
"""

from __future__ import annotations

import base64
import hashlib
import html

__all__ = ["CSP", "HEADERS", "render"]

POLL_SECONDS = 2
LIMIT = 200  # newest jobs shown (GET /v1/jobs takes up to 1000)

STYLE = """
:root { color-scheme: light; --ink: #1d2430; --muted: #667085; --line: #e3e7ee; --bg: #f6f8fb; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--ink); background: var(--bg); }
header { display: flex; align-items: baseline; gap: 12px; padding: 14px 24px;
         background: #1d2430; color: #fff; }
header h1 { margin: 0; font-size: 18px; font-weight: 600; }
header span { color: #b8c2d3; }
main { padding: 16px 24px; }
form { display: flex; flex-wrap: wrap; align-items: center; gap: 8px; max-width: 760px;
       padding: 16px; background: #fff; border: 1px solid var(--line); border-radius: 8px; }
form input { flex: 1 1 260px; padding: 7px 9px; font: inherit; border: 1px solid #c5ccd8;
             border-radius: 6px; }
form p { flex-basis: 100%; margin: 4px 0 0; }
button { padding: 7px 12px; font: inherit; border: 1px solid #c5ccd8; border-radius: 6px;
         background: #fff; cursor: pointer; }
button[type=submit] { background: #2f5bd3; border-color: #2f5bd3; color: #fff; }
.muted { color: var(--muted); }
#login-error { color: #b42318; }
.bar { display: flex; flex-wrap: wrap; align-items: center; gap: 8px 18px; margin-bottom: 10px; }
.bar #count { font-weight: 600; }
.bar button { margin-left: auto; }
#message { margin: 0 0 10px; padding: 8px 12px; border-radius: 6px; background: #fff4e5;
           border: 1px solid #f5c27a; }
.table { overflow-x: auto; background: #fff; border: 1px solid var(--line); border-radius: 8px; }
table { width: 100%; border-collapse: collapse; }
th, td { padding: 6px 8px; text-align: left; vertical-align: top; border-bottom: 1px solid var(--line);
         white-space: nowrap; }
th { position: sticky; top: 0; background: #eef1f6; font-weight: 600; font-size: 12px;
     color: #475467; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.time { font-variant-numeric: tabular-nums; }
td.id { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
td.error { white-space: normal; min-width: 220px; max-width: 520px; color: #b42318;
           font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
td.error div { white-space: pre-wrap; overflow-wrap: anywhere; overflow: hidden; cursor: pointer;
               display: -webkit-box; -webkit-box-orient: vertical; -webkit-line-clamp: 3; }
td.error div.open { display: block; }
td.tags { white-space: normal; min-width: 150px; max-width: 360px; }
.tag { display: inline-block; max-width: 100%; margin: 0 4px 3px 0; padding: 0 6px;
       border-radius: 10px; background: #eef1f6; border: 1px solid #d6dce6; font-size: 12px;
       white-space: nowrap; overflow: hidden; text-overflow: ellipsis; vertical-align: top; }
.status { display: inline-block; min-width: 78px; padding: 1px 8px; border-radius: 10px;
          font-size: 12px; font-weight: 600; text-align: center; }
.s-QUEUED { background: #eef1f6; color: #475467; }
.s-RUNNING { background: #e0eaff; color: #1d4ed8; }
.s-DONE { background: #dcfae6; color: #067647; }
.s-ERROR { background: #fee4e2; color: #b42318; }
.s-CANCELLED { background: #f2f4f7; color: #667085; }
.live { color: #1d4ed8; }
"""

SCRIPT = r"""
"use strict";
(function () {
  const KEY = "qjm.token";
  const POLL_MS = __POLL_MS__;
  const LIMIT = __LIMIT__;
  const STATUSES = ["QUEUED", "RUNNING", "DONE", "ERROR", "CANCELLED"];
  const byId = (id) => document.getElementById(id);
  let timer = null;
  let generation = 0;  // a poll answered after the token changed is dropped
  let skew = 0;  // server clock minus this one, in seconds (from the Date header)
  const opened = new Set();  // jobs whose whole error message is shown

  // /#token=... : move the token to sessionStorage, take it out of the address bar
  if (location.hash.length > 1) {
    const token = new URLSearchParams(location.hash.slice(1)).get("token");
    if (token !== null) {
      if (token.trim()) sessionStorage.setItem(KEY, token.trim());
      history.replaceState(null, "", location.pathname + location.search);
    }
  }

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function pad(n) { return String(n).padStart(2, "0"); }
  function day(d) {
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate());
  }
  function clock(d) {
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }
  // a time of the service: the clock alone today, else the date too (both in the tooltip)
  function timeCell(t, now) {
    const td = el("td", null, "time");
    if (t === null || t === undefined) return td;
    const d = new Date(t * 1000);
    const full = day(d) + " " + clock(d);
    td.textContent = day(d) === day(new Date(now * 1000)) ? clock(d) : full;
    td.title = full;
    return td;
  }
  function span(seconds) {
    if (seconds === null || !isFinite(seconds)) return "";
    seconds = Math.max(0, seconds);
    if (seconds < 10) return seconds.toFixed(2) + " s";
    if (seconds < 60) return seconds.toFixed(1) + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min " + pad(Math.floor(seconds % 60)) + " s";
    return Math.floor(seconds / 3600) + " h " + pad(Math.floor((seconds % 3600) / 60)) + " min";
  }
  function message(text) {
    const m = byId("message");
    m.textContent = text || "";
    m.hidden = !text;
  }
  function show(signedIn) {
    byId("login").hidden = signedIn;
    byId("jobs").hidden = !signedIn;
  }
  function stop() {
    generation += 1;
    if (timer !== null) clearTimeout(timer);
    timer = null;
  }
  function later(ms) {
    if (timer !== null) clearTimeout(timer);
    timer = setTimeout(poll, ms);
  }

  function row(job, now) {
    const tr = document.createElement("tr");
    tr.dataset.id = String(job.id);
    tr.appendChild(el("td", job.id, "id"));
    const status = STATUSES.includes(job.status) ? job.status : "?";
    const st = el("td");
    st.appendChild(el("span", status, "status s-" + status));
    if (job.attempts > 1) st.appendChild(el("span", " attempt " + job.attempts, "muted"));
    tr.appendChild(st);
    const tags = el("td", null, "tags");
    for (const tag of job.tags || []) {
      const chip = el("span", tag, "tag");
      chip.title = String(tag);
      tags.appendChild(chip);
    }
    tr.appendChild(tags);
    tr.appendChild(el("td", job.n_circuits, "num"));
    tr.appendChild(el("td", job.shots === null ? "" : job.shots, "num"));
    tr.appendChild(timeCell(job.created, now));
    tr.appendChild(timeCell(job.started, now));
    tr.appendChild(timeCell(job.finished, now));
    // waited: created -> started (or now, while queued); ran: started -> finished (or now)
    const final = job.finished !== null;
    const waitEnd = job.started !== null ? job.started : (final ? job.finished : now);
    const waited = el("td", span(waitEnd - job.created), "num");
    if (job.started === null && !final) waited.classList.add("live");
    tr.appendChild(waited);
    const ran = el("td", job.started === null ? "" : span((final ? job.finished : now) - job.started), "num");
    if (job.started !== null && !final) ran.classList.add("live");
    tr.appendChild(ran);
    const error = el("td", null, "error");
    if (job.error) {  // three lines of it; a click shows it all
      const text = el("div", job.error, opened.has(job.id) ? "open" : "");
      text.addEventListener("click", () => {
        if (text.classList.toggle("open")) opened.add(job.id); else opened.delete(job.id);
      });
      error.appendChild(text);
    }
    tr.appendChild(error);
    return tr;
  }

  function render(jobs) {
    const now = Date.now() / 1000 + skew;
    const rows = byId("rows");
    rows.replaceChildren(...jobs.map((job) => row(job, now)));
    const counts = {};
    for (const job of jobs) counts[job.status] = (counts[job.status] || 0) + 1;
    const n = jobs.length;
    byId("count").textContent = (n >= LIMIT ? "newest " : "") + n + (n === 1 ? " job" : " jobs");
    byId("count").dataset.count = String(n);
    byId("summary").textContent = STATUSES.filter((s) => counts[s])
      .map((s) => counts[s] + " " + s).join(" \u00b7 ");
    byId("empty").hidden = n > 0;
    byId("updated").textContent = "updated " + clock(new Date(now * 1000));
  }

  async function poll() {
    timer = null;
    const token = sessionStorage.getItem(KEY);
    if (!token) { show(false); return; }
    show(true);
    if (document.hidden) return;  // polled again when the tab is shown
    const mine = generation;
    let wait = POLL_MS;
    try {
      const r = await fetch("v1/jobs?limit=" + LIMIT, {
        headers: { "Authorization": "Bearer " + token, "Accept": "application/json" },
        cache: "no-store", credentials: "omit", redirect: "error", referrerPolicy: "no-referrer",
      });
      if (mine !== generation) return;
      if (r.status === 401) {
        sessionStorage.removeItem(KEY);
        stop();
        show(false);
        byId("login-error").textContent = "This service does not know that token.";
        byId("login-error").hidden = false;
        return;
      }
      let body = null;
      try { body = await r.json(); } catch (e) { body = null; }
      if (mine !== generation) return;
      if (!r.ok) {
        const retry = Number(r.headers.get("Retry-After"));
        if (r.status === 429 && retry > 0) wait = Math.max(wait, retry * 1000);
        message("The service answered " + r.status + ": " +
          (body && typeof body.detail === "string" ? body.detail : r.statusText) + " (retrying)");
      } else {
        const date = Date.parse(r.headers.get("Date") || "");
        if (isFinite(date)) {
          const s = (date - Date.now()) / 1000;
          skew = Math.abs(s) > 2 ? s : 0;  // the Date header has a resolution of 1 s
        }
        message("");
        render(Array.isArray(body && body.jobs) ? body.jobs : []);
      }
    } catch (e) {
      if (mine !== generation) return;
      message("The service does not answer (" + e + "); retrying.");
    }
    if (mine === generation) later(wait);
  }

  byId("login").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = byId("token");
    const token = input.value.trim();
    input.value = "";
    if (!token) return;
    sessionStorage.setItem(KEY, token);
    byId("login-error").hidden = true;
    stop();
    byId("rows").replaceChildren();
    poll();
  });
  byId("signout").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    stop();
    byId("rows").replaceChildren();
    message("");
    show(false);
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && sessionStorage.getItem(KEY)) { stop(); poll(); }
  });
  poll();
})();
"""

SCRIPT = SCRIPT.replace("__POLL_MS__", str(POLL_SECONDS * 1000)).replace("__LIMIT__", str(LIMIT))

BODY = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>qjm jobs</title>
<style>{style}</style>
</head>
<body>
<header><h1>qjm jobs</h1><span>{backend} &middot; API {api}</span></header>
<main>
<form id="login" method="post" autocomplete="off" hidden>
  <label for="token">Token</label>
  <input id="token" type="password" autocomplete="off" spellcheck="false" placeholder="your token from the service's tokens file">
  <button type="submit">Show my jobs</button>
  <p id="login-error" class="error" hidden></p>
  <p class="muted">The token stays in this browser tab (sessionStorage) and goes only to this
  service, in the Authorization header of its requests.</p>
</form>
<section id="jobs" hidden>
  <div class="bar">
    <span id="count"></span><span id="summary" class="muted"></span>
    <span id="updated" class="muted"></span>
    <button id="signout" type="button">Forget token</button>
  </div>
  <p id="message" role="status" hidden></p>
  <div class="table"><table>
    <thead><tr><th>job</th><th>status</th><th>tags</th><th>circuits</th><th>shots</th>
    <th>created</th><th>started</th><th>finished</th><th>waited</th><th>ran</th><th>error</th></tr></thead>
    <tbody id="rows"></tbody>
  </table></div>
  <p id="empty" class="muted" hidden>No jobs yet.</p>
</section>
<noscript><p>This page needs JavaScript. The REST API (GET /v1/jobs, see docs/remote.md)
works without it.</p></noscript>
</main>
<script>{script}</script>
</body>
</html>
"""


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


# Only this page's own script and style run; it may talk to this service only; nothing may
# frame it, change its base URL or submit a form anywhere; Trusted Types refuse markup strings.
CSP = "; ".join(
    [
        "default-src 'none'",
        f"script-src {_sha256(SCRIPT)}",
        f"style-src {_sha256(STYLE)}",
        "connect-src 'self'",
        "img-src 'self'",  # the browser's own request for /favicon.ico
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    ]
)

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def render(backend_name: str, api_version: str) -> bytes:
    """The page's HTML (UTF-8) for a service of ``backend_name``; send it with :data:`HEADERS`."""
    return BODY.format(
        style=STYLE,
        script=SCRIPT,
        backend=html.escape(backend_name),
        api=html.escape(api_version),
    ).encode("utf-8")
