"""qjm's benchmark harness: ``python -m bench`` (or ``qjm bench``).

Every case is timed side by side, in one run, against the baseline a user would otherwise write
with qiskit alone, on real Aer results replicated to size. The table (sizes, throughput, the ratio
baseline time / qjm time, the target of issue 3 and whether it is met) is printed and written to
``bench/RESULTS.md`` with the command that produced it.

Modules:
    ``bench.data``: Aer data generation (random 27-bit outcomes, replicated and perturbed to size).
    ``bench.cases``: the cases; each returns rows of the table.
    ``bench.timing``: best-of-N timing, the same N for both sides.
    ``bench.report``: the markdown table and the RESULTS.md writer.
    ``bench.__main__``: the command line, ``main(argv) -> int``.
"""

__all__ = ["main"]


def main(argv=None) -> int:
    """Run the harness (see ``python -m bench --help``)."""
    from bench.__main__ import main as _main

    return _main(argv)
