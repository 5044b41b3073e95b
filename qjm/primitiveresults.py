"""ManagedPrimitiveResults: the results of a job set of PUBs, read like one ``PrimitiveResult``."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from qiskit.exceptions import QiskitError

from qjm._kernels import kernels
from qjm.exceptions import JobManagerJobNotFound, ManagedResultDataNotAvailable
from qjm.managedresults import not_combinable
from qjm.pubrecords import PubRecord, join_shots, join_sweep
from qjm.records import fresh


class ManagedPrimitiveResults:
    """The results of the PUBs of a job set, in submission order.

    Built by :meth:`ManagedJobSet.results` for sampler and estimator work. ``results[i]`` is the
    ``SamplerPubResult`` / ``PubResult`` of PUB ``i`` as qiskit gives it (joined back to its shape
    when qjm cut it along its sweep or by shots); :meth:`primitive_result` is one
    ``PrimitiveResult`` for the whole set.

    Attributes:
        job_set_id: the id of the job set.
        backend_name: the name of the primitive (or its backend) it ran on.
        success: False when any PUB's data is missing.
    """

    def __init__(self, job_set: Any, records: list, partial: bool):
        self.job_set_id = job_set.job_set_id()
        self.backend_name = job_set.backend_name()
        self._plan = job_set._plan
        layout = job_set._layout
        self._shapes = [tuple(s) for s in layout["shapes"]]
        self._pieces = [tuple(p) for p in layout["pieces"]]
        self._records = records
        self._partial = partial
        self._errors = {mj.index: mj.error_message() for mj in job_set._managed}
        # for each PUB, its sweep ranges in order, each with its pieces (one per shot part)
        self._ranges: list[dict[tuple[int, int], list[tuple[int, int]]]] = [
            {} for _ in self._shapes
        ]
        for p, piece in enumerate(self._pieces):
            pub, start, stop = piece[:3]
            part = piece[3] if len(piece) > 3 else 0
            self._ranges[pub].setdefault((start, stop), []).append((part, p))
        for ranges in self._ranges:
            for key in ranges:
                ranges[key].sort()
        self._available = np.array([self._where(i) is not None for i in range(len(self))])
        self.success = bool(self._available.all())
        self._joined: dict[int, PubRecord] = {}

    # -- look-up -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._shapes)

    def missing(self) -> list[int]:
        """Indices of the PUBs whose data is missing."""
        return np.flatnonzero(~self._available).tolist()

    def _jobs_of(self, i: int) -> list[tuple[int, int]]:
        """(job, index in it) of every piece of PUB ``i``."""
        return [
            self._plan.locate(p)
            for key in sorted(self._ranges[i])
            for _part, p in self._ranges[i][key]
        ]

    def _where(self, i: int) -> list[list[PubRecord]] | None:
        """For each sweep range of PUB ``i``, its shot parts' records; None when any is missing."""
        out = []
        for key in sorted(self._ranges[i]):
            parts = []
            for _part, p in self._ranges[i][key]:
                job, k = self._plan.locate(p)
                record = self._records[job]
                if record is None or k >= len(record.pubs):
                    return None
                parts.append(record.pubs[k])
            out.append(parts)
        return out

    def _index(self, pub: Any) -> int:
        if isinstance(pub, numbers.Integral) and not isinstance(pub, bool):
            if 0 <= pub < len(self):
                return int(pub)
            if -len(self) <= pub < 0:
                return int(pub) + len(self)
            raise JobManagerJobNotFound(
                f"PUB index {pub} is out of range: this job set has {len(self)} PUBs"
            )
        raise JobManagerJobNotFound(f"look PUBs up by their index, not {type(pub).__name__}")

    def _record(self, pub: Any) -> PubRecord:
        i = self._index(pub)
        joined = self._joined.get(i)
        if joined is not None:
            return joined
        where = self._where(i)
        if where is None:
            jobs = sorted({j for j, _ in self._jobs_of(i)})
            why = "; ".join(
                f"job {j}: {self._errors.get(j) or 'no result'}"
                for j in jobs
                if self._errors.get(j)
            )
            raise ManagedResultDataNotAvailable(
                f"the data of PUB {i} is not available: its job failed, was cancelled, was never "
                "submitted, or its result was not fetched" + (f" ({why})" if why else "")
            )
        pieces = [join_shots(parts) for parts in where]
        joined = self._joined[i] = join_sweep(pieces, self._shapes[i])
        return joined

    # -- qiskit's PrimitiveResult ---------------------------------------------------------------

    def __getitem__(self, pub: Any) -> Any:
        """The ``SamplerPubResult`` / ``PubResult`` of a PUB, as qiskit gives it (a fresh copy).

        Raises:
            JobManagerJobNotFound: no such PUB.
            ManagedResultDataNotAvailable: its data is missing.
        """
        return self._record(pub).to_pub_result()

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def primitive_result(self) -> Any:
        """One ``PrimitiveResult`` with every PUB's result, in submission order.

        Raises:
            ManagedResultDataNotAvailable: some PUB's data is missing (``success`` is False).
        """
        from qiskit.primitives import PrimitiveResult

        if not self.success:
            raise not_combinable("PUB", self.missing())
        metadata = next((r.metadata for r in self._records if r is not None), {})
        return PrimitiveResult([self[i] for i in range(len(self))], metadata=fresh(metadata))

    # -- beyond: arrays from the merge engine ----------------------------------------------------

    def _bits(self, pub: Any, register: str | None) -> tuple[np.ndarray, int]:
        record = self._record(pub)
        if not record.bits:
            raise QiskitError(f"PUB {pub} has no BitArray (is it an estimator's result?)")
        if register is not None:
            if register not in record.bits:
                raise QiskitError(
                    f"PUB {pub} has no register {register!r}; it has {', '.join(record.bits)}"
                )
            return record.bits[register]
        if len(record.bits) == 1:
            return next(iter(record.bits.values()))
        joined = record.to_pub_result().join_data()
        return joined.array, joined.num_bits

    def bitarray(self, pub: Any, register: str | None = None) -> Any:
        """The ``BitArray`` of a register of a sampler PUB (a fresh copy); with ``register=None``,
        the only register, or every register joined as ``SamplerPubResult.join_data`` does."""
        from qiskit.primitives import BitArray

        array, num_bits = self._bits(pub, register)
        return BitArray(array.copy(), num_bits)

    def get_counts(self, pub: Any, register: str | None = None) -> dict[str, int]:
        """Counts over every shot and parameter set of a sampler PUB, as
        ``BitArray.get_counts()`` gives them, from the compiled packed-bit histogram."""
        array, num_bits = self._bits(pub, register)
        keys, counts = _histogram(array, num_bits)
        return dict(zip(kernels.format_bits(keys, num_bits, None), counts.tolist()))

    def expectation_value(self, pub: Any, pauli: str, register: str | None = None) -> Any:
        """The expectation value of a diagonal Pauli string (``Z``, ``I``, ``0``, ``1``) on a
        register, per parameter set, as ``BitArray.expectation_values`` gives it (a float for a
        PUB of shape ``()``)."""
        values = self.bitarray(pub, register).expectation_values(pauli)
        return float(values) if np.ndim(values) == 0 else values

    def __repr__(self) -> str:
        return (
            f"ManagedPrimitiveResults(job_set_id={self.job_set_id!r}, "
            f"backend_name={self.backend_name!r}, pubs={len(self)}, success={self.success})"
        )

    def _repr_html_(self) -> str:
        """The notebook view (:mod:`qjm.notebook`)."""
        from qjm.notebook import primitive_results_html

        return primitive_results_html(self)

    def plot_histogram(self, pub: Any, register: str | None = None, **kwargs: Any) -> Any:
        """qiskit's ``plot_histogram`` of a sampler PUB's counts (``get_counts(pub, register)``,
        over every shot and parameter set); ``path=`` or ``filename=`` saves it, other keywords
        go to qiskit. Returns the matplotlib Figure (needs ``qjm[plot]``)."""
        from qjm.plots import pub_histogram

        return pub_histogram(self, pub, register=register, **kwargs)


def _histogram(array: np.ndarray, num_bits: int) -> tuple[np.ndarray, np.ndarray]:
    counter = getattr(kernels, "bitarray_counts", None)
    if counter is not None:
        return counter(array, num_bits)
    # until the compiled histogram is there: numpy over the packed rows
    rows = np.ascontiguousarray(array).reshape(-1, array.shape[-1])
    nbytes = rows.shape[1]
    if num_bits % 8 and nbytes:
        rows = rows.copy()
        rows[:, 0] &= (1 << (num_bits % 8)) - 1
    keys, counts = np.unique(rows, axis=0, return_counts=True)
    if num_bits <= 64:
        padded = np.zeros((len(keys), 8), dtype=np.uint8)
        padded[:, 8 - nbytes :] = keys
        keys = padded.view(">u8").reshape(-1).astype(np.uint64)
        order = np.argsort(keys, kind="stable")
        return keys[order], counts[order].astype(np.int64)
    return keys, counts.astype(np.int64)
