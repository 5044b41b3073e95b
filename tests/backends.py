"""The fault-injecting backends of qjm's tests, now the public module :mod:`qjm.testing`.

Kept so that ``from backends import SlowBackend`` (in the tests and in the child processes they
start) goes on working; new code imports from ``qjm.testing``.
"""

from qjm.testing import *  # noqa: F403
from qjm.testing import __all__  # noqa: F401
