"""qjm's logging: the ``qjm`` logger hierarchy, silent until the application configures logging.

Every module logs to ``logging.getLogger(__name__)`` (``qjm.managedjobset``, ``qjm.store``...):
at INFO what goes as it should (a job submitted: its index, job id and size; fetched: its status
and how long the fetch took; a busy backend waited for), at WARNING what went wrong (a submission
or a fetch retried: why, which attempt, after how long; a job that failed and why; a result kept
in memory only). To see it::

    import logging
    logging.basicConfig(level=logging.INFO)          # everything, qjm included
    # or only qjm's, on stderr:
    qjm.logs.log_to_stderr(logging.INFO)

``qjm -v ...`` shows INFO on stderr (``-vv`` DEBUG); the command shows WARNING by default.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["log_to_stderr"]

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Quiet(logging.NullHandler):
    """The handler on ``qjm``: nothing is written, so importing qjm prints nothing (Python's
    last-resort handler is not used for qjm's records). ``qjm serve`` and ``qjm -v`` add a
    stderr handler of their own (:func:`log_to_stderr`)."""


def silence() -> None:
    """Put the quiet handler on ``qjm`` (once); ``import qjm`` does it."""
    logger = logging.getLogger("qjm")
    if not any(isinstance(h, _Quiet) for h in logger.handlers):
        logger.addHandler(_Quiet())


def log_to_stderr(level: int | str = logging.INFO) -> logging.Handler:
    """Write qjm's log records of ``level`` and above to stderr (what ``qjm -v`` does); returns
    the handler (``logging.getLogger("qjm").removeHandler(handler)`` stops it)."""
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
    logger = logging.getLogger("qjm")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.setLevel(level)
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > level:
        logger.setLevel(level)
    return handler
