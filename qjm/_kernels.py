"""Selects the merge kernels: the compiled ``qjm._merge`` or its pure-Python twin ``qjm._merge_py``.

``QJM_PUREPYTHON=1`` in the environment, or a missing extension, selects the twin. The choice is made
once, at import; ``IMPLEMENTATION`` says which one is in use ("cython" or "python").
"""

from __future__ import annotations

import os

if os.environ.get("QJM_PUREPYTHON", "") not in ("", "0"):
    from qjm import _merge_py as kernels

    IMPLEMENTATION = "python"
else:
    try:
        from qjm import _merge as kernels  # type: ignore[attr-defined]

        IMPLEMENTATION = "cython"
    except ImportError:  # extension not built: fall back to the twin
        from qjm import _merge_py as kernels

        IMPLEMENTATION = "python"

__all__ = ["kernels", "IMPLEMENTATION"]
