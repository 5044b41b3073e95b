"""``qjm serve``: a job service over HTTP that runs submitted circuits on a local backend.

Start it with ``qjm serve --tokens FILE --data DIR`` (or ``python -m qjm.server ...``) and talk to it
with :class:`qjm.remote.RemoteBackend`. The REST API (under ``/v1``, OpenAPI at ``/openapi.json``) is
described in ``docs/remote.md``. FastAPI and uvicorn are needed only here (``pip install
"qjm[server]"``); importing this package does not import them, so the client can use
:mod:`qjm.wire` without them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["add_subparser", "build_parser", "config_from_args", "create_app", "serve"]

DESCRIPTION = (
    "Run a job service over HTTP: users submit circuits with qjm.remote.RemoteBackend (or any "
    "HTTP client; OpenAPI at /openapi.json) and they run on a local AerSimulator. See "
    "docs/remote.md."
)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p.add_argument(
        "--tokens",
        required=True,
        metavar="FILE",
        help="users and their bearer tokens, one 'NAME TOKEN' per line (# comments allowed); "
        "read again when it changes",
    )
    p.add_argument(
        "--data",
        required=True,
        metavar="DIR",
        help="directory of the service's SQLite file (jobs.sqlite): jobs survive restarts",
    )
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="worker processes running jobs (default 1; each job already runs in parallel over "
        "its experiments and shots, so more help with many small jobs)",
    )
    p.add_argument(
        "--method",
        default="automatic",
        help="AerSimulator simulation method (default automatic)",
    )
    p.add_argument(
        "--dask",
        default=None,
        metavar="ADDRESS",
        help="run the jobs on a Dask cluster (its scheduler's address, tcp://head:8786) instead "
        "of in the worker processes; --workers is then the number of jobs on the cluster at "
        "once (needs qjm[dask])",
    )
    p.add_argument(
        "--results-once",
        action="store_true",
        help="serve each result once: a reader gets it under a read lease and confirms it with "
        "DELETE /v1/jobs/{id}/result; later requests get 410 Gone",
    )
    p.add_argument(
        "--result-lease",
        type=_positive_float,
        default=60.0,
        help="with --results-once: seconds a result read but not yet confirmed is kept for its "
        "reader before anyone may read it again (default 60)",
    )
    p.add_argument(
        "--latency-ms",
        type=_non_negative_float,
        default=0.0,
        help="delay every response by this many ms, without holding a worker (tests, benchmarks)",
    )
    p.add_argument(
        "--max-circuits", type=_positive_int, default=1000, help="circuits per job (default 1000)"
    )
    p.add_argument(
        "--max-shots",
        type=_positive_int,
        default=100_000,
        help="shots per experiment (default 100000)",
    )
    p.add_argument(
        "--max-clbits",
        type=_positive_int,
        default=4096,
        help="classical bits per circuit (default 4096; qubits are bounded by the backend's)",
    )
    p.add_argument(
        "--max-instructions",
        type=_positive_int,
        default=1_000_000,
        help="instructions per circuit (default 1000000)",
    )
    p.add_argument(
        "--parse-workers",
        type=_positive_int,
        default=2,
        help="processes that read submitted jobs (JSON and QPY) apart from the one answering "
        "HTTP, under memory and CPU limits (default 2)",
    )
    p.add_argument(
        "--parse-memory-mb",
        type=_positive_int,
        default=1024,
        help="memory a reading process may take on top of its own (RLIMIT_AS; default 1024)",
    )
    p.add_argument(
        "--parse-timeout",
        type=_positive_float,
        default=20.0,
        help="seconds (wall and CPU) to read one submitted job before it is refused (default 20)",
    )
    p.add_argument(
        "--max-payload-bytes",
        type=_positive_int,
        default=32 * 1024 * 1024,
        help="largest request body in bytes (default 32 MiB)",
    )
    p.add_argument(
        "--max-pending",
        type=_positive_int,
        default=32,
        help="jobs QUEUED or RUNNING per user before 429 (default 32)",
    )
    p.add_argument(
        "--header-timeout",
        type=_positive_float,
        default=10.0,
        metavar="SECONDS",
        help="a request's line and headers must arrive within this time (from the connection's "
        "opening, or from the first byte of a later request on a kept-alive connection); else "
        "408 and the connection is closed (default 10)",
    )
    p.add_argument(
        "--body-timeout",
        type=_positive_float,
        default=60.0,
        metavar="SECONDS",
        help="a request's body must arrive within this time after its headers, in all (not an "
        "idle time); else 408 and the connection is closed (default 60)",
    )
    p.add_argument(
        "--max-requests-per-token",
        type=_positive_int,
        default=64,
        metavar="N",
        help="requests in progress at once per bearer token; one more answers 429 with "
        "Retry-After (default 64)",
    )
    p.add_argument(
        "--job-delay-ms",
        type=_non_negative_float,
        default=0.0,
        help="each job waits this long in its worker before running, like a slow device "
        "(tests, benchmarks)",
    )
    p.add_argument(
        "--max-attempts",
        type=_positive_int,
        default=3,
        help="a job whose run was cut off (service or worker died) this many times is marked "
        "ERROR instead of being run again (default 3)",
    )
    p.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    p.add_argument("--access-log", action="store_true", help="log every request")


def build_parser(prog: str = "qjm serve") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    _add_arguments(parser)
    return parser


def add_subparser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``serve`` on an argparse subparsers object (``qjm serve ...``); the parsed
    namespace's ``func(args)`` runs the service and returns the exit code."""
    p = subparsers.add_parser(
        "serve",
        help="run a job service over HTTP for a local backend (needs qjm[server])",
        description=DESCRIPTION,
    )
    _add_arguments(p)
    p.set_defaults(func=_run)
    return p


def config_from_args(args: argparse.Namespace) -> Any:
    from qjm.server.app import ServerConfig

    return ServerConfig(
        tokens_file=args.tokens,
        data_dir=args.data,
        host=args.host,
        port=args.port,
        workers=args.workers,
        method=args.method,
        results_once=args.results_once,
        result_lease=args.result_lease,
        latency_ms=args.latency_ms,
        max_circuits=args.max_circuits,
        max_shots=args.max_shots,
        max_clbits=args.max_clbits,
        max_instructions=args.max_instructions,
        parse_workers=args.parse_workers,
        parse_memory_mb=args.parse_memory_mb,
        parse_timeout=args.parse_timeout,
        max_payload_bytes=args.max_payload_bytes,
        max_pending=args.max_pending,
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        max_requests_per_token=args.max_requests_per_token,
        job_delay_ms=args.job_delay_ms,
        max_attempts=args.max_attempts,
        log_level=args.log_level,
        access_log=args.access_log,
    )


def create_app(config: Any) -> Any:
    """The FastAPI app for a :class:`qjm.server.app.ServerConfig`."""
    from qjm.server.app import create_app as _create

    return _create(config)


def _run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from qjm.server.app import create_app as _create
    except ImportError as exc:
        print(
            f"qjm serve: {exc.name or exc} is not installed; install the server extra: "
            'pip install "qjm[server]"',
            file=sys.stderr,
        )
        return 2
    if args.dask:
        import os

        from qjm.server.runner import DASK_ENV

        try:
            import qjm.dask  # noqa: F401
        except ImportError as exc:
            print(f"qjm serve --dask: {exc}", file=sys.stderr)
            return 2
        os.environ[DASK_ENV] = args.dask  # read by the worker processes the runner starts
    config = config_from_args(args)
    from qjm.logs import log_to_stderr

    # the service is an application: qjm's records (the library's and the service's) at its
    # --log-level go to stderr, where uvicorn's go too
    log_to_stderr(config.log_level)
    try:
        app = _create(config)
    except (OSError, ValueError) as exc:
        print(f"qjm serve: {exc}", file=sys.stderr)
        return 2

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            # a graceful stop on SIGTERM/SIGINT ends with exit code 0, through Python's own
            # shutdown (uvicorn would raise the signal again and skip the clean-up)
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured.clear()

    from qjm.server.limits import bounded_h11_protocol

    server = Server(
        uvicorn.Config(
            app,
            http=bounded_h11_protocol(config.header_timeout, config.body_timeout),
            host=config.host,
            port=config.port,
            log_level=config.log_level,
            access_log=config.access_log,
            timeout_keep_alive=30,
            timeout_graceful_shutdown=5,
            lifespan="on",
        )
    )
    server.run()
    return 0 if server.started else 1


def serve(argv: Sequence[str] | None = None, prog: str = "qjm serve") -> int:
    """``qjm serve`` with these arguments (default: ``sys.argv[1:]``); returns the exit code."""
    args = build_parser(prog).parse_args(argv)
    return _run(args)
