"""Selects the merge kernels: the compiled ``qjm._merge`` or its pure-Python twin ``qjm._merge_py``.

``QJM_PUREPYTHON=1`` in the environment, or a missing extension, selects the twin. The choice is made
once, at import; ``IMPLEMENTATION`` says which one is in use ("cython" or "python"). A missing
extension without ``QJM_PUREPYTHON`` set warns once (:class:`qjm.exceptions.PurePythonKernelsWarning`):
running Python from a source checkout that was never built silently took the slow path before.
"""

from __future__ import annotations

import os
import warnings

if os.environ.get("QJM_PUREPYTHON", "") not in ("", "0"):
    from qjm import _merge_py as kernels

    IMPLEMENTATION = "python"
else:
    try:
        from qjm import _merge as kernels  # type: ignore[attr-defined]

        IMPLEMENTATION = "cython"
    except ImportError as exc:  # extension not built: fall back to the twin, and say so
        from qjm import _merge_py as kernels
        from qjm.exceptions import PurePythonKernelsWarning

        IMPLEMENTATION = "python"
        warnings.warn(
            "qjm is using its pure-Python merge kernels: the compiled extension qjm._merge "
            f"could not be imported ({exc}). Results are the same, merging is much slower. "
            "Build it with `pip install -e .` (or `pip install .`) in the qjm source checkout, "
            "or set QJM_PUREPYTHON=1 to use the pure-Python kernels on purpose and silence "
            "this warning.",
            PurePythonKernelsWarning,
            stacklevel=2,
        )

__all__ = ["kernels", "IMPLEMENTATION"]
