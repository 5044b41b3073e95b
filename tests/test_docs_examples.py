"""Every Python example of README.md and docs/*.md runs as written.

The blocks of one file run in order in one fresh interpreter, as a reader pastes them one after
another (later blocks use names earlier ones made), with its own QJM_HOME and working directory.
The job service they talk to is started as README.md says: ``qjm serve`` on 127.0.0.1:8000 with the
README's tokens. The only change made to the text is the size of the tour (SCALED: fewer circuits
and shots, so that CI is quick); nothing else is touched.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from servers import Server, child_env

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# sizes only: the tour's 5,000 circuits x 4,000 shots become 300 x 400
SCALED = {"range(5000)": "range(300)", "shots=4000, memory=True": "shots=400, memory=True"}
TOKENS = {"alice": "s3cret-token-of-alice", "bob": "s3cret-token-of-bob"}

RUNNER = r"""
import json, sys, traceback
blocks = json.load(open(sys.argv[1]))
namespace = {"__name__": "__main__"}
for i, (line, code) in enumerate(blocks):
    try:
        exec(compile(code, f"{sys.argv[2]}:{line}", "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        print(f"FAILED: the block at {sys.argv[2]} line {line}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: block at line {line}", flush=True)
"""


def python_blocks(path: Path) -> list[tuple[int, str]]:
    text = path.read_text()
    blocks = []
    for match in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M):
        line = text[: match.start()].count("\n") + 2
        code = match.group(1)
        for old, new in SCALED.items():
            code = code.replace(old, new)
        blocks.append((line, code))
    return blocks


@pytest.fixture(scope="module")
def readme_service(tmp_path_factory):
    """``qjm serve --host 127.0.0.1 --port 8000 --tokens tokens --data ./qjm-data`` with the
    README's tokens."""
    server = Server(tmp_path_factory.mktemp("service"), port=8000)
    server.tokens = dict(TOKENS)
    server.tokens_file.write_text("".join(f"{u} {t}\n" for u, t in TOKENS.items()))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.mark.parametrize("doc", DOCS, ids=[p.name for p in DOCS])
def test_every_python_example_runs_as_written(doc, readme_service, tmp_path):
    blocks = python_blocks(doc)
    if doc.name == "README.md":
        assert len(blocks) >= 10, "the README lost its examples?"
    if not blocks:
        pytest.skip(f"{doc.name} has no Python examples")
    source = tmp_path / "blocks.json"
    source.write_text(json.dumps(blocks))
    env = child_env()
    env.update(QJM_HOME=str(tmp_path / "home"), MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(source), doc.name],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    done = proc.stdout.count("ok: block")
    print(f"{doc.name}: {done} of {len(blocks)} Python blocks ran")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-6000:]
    assert done == len(blocks)
