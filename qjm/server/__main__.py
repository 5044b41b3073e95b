"""``python -m qjm.server ...`` is ``qjm serve ...``."""

import sys

from qjm.server import serve

if __name__ == "__main__":
    sys.exit(serve(prog="python -m qjm.server"))
