"""``python -m qjm ...``: the ``qjm`` command (:mod:`qjm.cli`)."""

import sys

from qjm.cli import main

if __name__ == "__main__":
    sys.exit(main())
