"""ManagedResults: the results of a whole job set, read like one ``qiskit.result.Result``."""

from __future__ import annotations

from typing import Any

import numpy as np
from qiskit.exceptions import QiskitError
from qiskit.quantum_info import Statevector
from qiskit.result import Counts, Result, postprocess
from qiskit.result.models import MeasLevel

from qjm._kernels import kernels
from qjm.exceptions import ManagedResultDataNotAvailable
from qjm.lookup import ExperimentIndex
from qjm.plan import Plan
from qjm.records import ExperimentRecord, JobRecord, fresh, outcomes_at

_UNSET = object()


class ColumnarCounts(Counts):
    """A ``qiskit.result.Counts`` built from outcome arrays; ``int_raw``/``hex_raw`` and a
    ``creg_sizes`` of its own on demand (a histogram read and held costs one object that
    Python's garbage collector walks, not several)."""

    _keys: np.ndarray
    _values: np.ndarray
    _creg_sizes: Any = None  # shared with the record; copied when first read

    @property
    def creg_sizes(self) -> Any:
        own = self.__dict__.get("_own_creg_sizes", _UNSET)
        if own is _UNSET:
            own = self.__dict__["_own_creg_sizes"] = fresh(self._creg_sizes)
        return own

    @creg_sizes.setter
    def creg_sizes(self, value: Any) -> None:
        self.__dict__["_own_creg_sizes"] = value

    @property
    def int_raw(self) -> dict[int, int]:  # type: ignore[override]
        cached = self.__dict__.get("_int_raw")
        if cached is None:
            keys = self._keys
            ints = (
                keys.tolist()
                if keys.ndim == 1
                else [int.from_bytes(row.tobytes(), "big") for row in keys]
            )
            cached = self.__dict__["_int_raw"] = dict(zip(ints, self._values.tolist()))
        return cached

    @property
    def hex_raw(self) -> dict[str, int]:  # type: ignore[override]
        cached = self.__dict__.get("_hex_raw")
        if cached is None:
            cached = self.__dict__["_hex_raw"] = {hex(k): v for k, v in self.int_raw.items()}
        return cached


def _counts_from_arrays(record: ExperimentRecord) -> ColumnarCounts:
    return _columnar_counts(*record.counts, record.header)


def _columnar_counts(keys: np.ndarray, values: np.ndarray, header: dict) -> ColumnarCounts:
    strings = kernels.format_bits(keys, header.get("memory_slots"), header.get("creg_sizes"))
    out = ColumnarCounts.__new__(ColumnarCounts)
    dict.update(out, zip(strings, values.tolist()))
    out._keys = _read_only(keys)
    out._values = _read_only(values)
    out._creg_sizes = header.get("creg_sizes")
    out.memory_slots = header.get("memory_slots")
    out.time_taken = fresh(header.get("time_taken"))
    return out


def _parity(outcomes: np.ndarray) -> np.ndarray:
    """Parity (0 or 1) of the set bits of each outcome (uint64 or packed-bit rows)."""
    if outcomes.ndim == 2:
        return np.unpackbits(outcomes, axis=1).sum(axis=1, dtype=np.int64) & 1
    x = outcomes.astype(np.uint64)
    for shift in (32, 16, 8, 4, 2, 1):
        x ^= x >> np.uint64(shift)
    return (x & np.uint64(1)).astype(np.int64)


def _read_only(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


def merge_parts(parts: list[ExperimentRecord]) -> ExperimentRecord:
    """One record for an experiment whose shots ran in several parts: counts summed, memory
    concatenated in part order, shots the total."""
    first = parts[0]
    if len(parts) == 1:
        return first
    fields = dict(first.fields)
    fields["shots"] = sum(int(p.fields.get("shots") or 0) for p in parts)
    record = ExperimentRecord(fields=fields, width=first.width, data=dict(first.data))
    if all(p.counts is not None for p in parts):
        record.counts = kernels.merge_counts(
            [p.counts[0] for p in parts], [p.counts[1] for p in parts]
        )
    if all(p.memory is not None for p in parts):
        record.memory = np.concatenate([p.memory for p in parts])
    # what was kept as the backend spelled it is merged the same way: counts summed by key,
    # level-2 memory in part order
    if all(isinstance(p.data.get("counts"), dict) for p in parts):
        merged: dict = {}
        for p in parts:
            for key, value in p.data["counts"].items():
                merged[key] = merged.get(key, 0) + value
        record.data["counts"] = merged
    if first.meas_level == MeasLevel.CLASSIFIED and all(
        isinstance(p.data.get("memory"), list) for p in parts
    ):
        record.data["memory"] = [shot for p in parts for shot in p.data["memory"]]
    return record


def not_combinable(what: str, missing: list[int]) -> ManagedResultDataNotAvailable:
    """The error of combining a set whose ``missing`` items (experiments, PUBs) are missing."""
    shown = ", ".join(map(str, missing[:10])) + ("..." if len(missing) > 10 else "")
    return ManagedResultDataNotAvailable(
        f"cannot combine the results: {len(missing)} {what}(s) are missing (indices {shown})"
    )


class ManagedResults:
    """The results of the experiments of a job set.

    Built by :meth:`ManagedJobSet.results`. Experiments are looked up by name, global index
    (0..N-1 over the whole set) or circuit, as in ``qiskit.result.Result``.

    Attributes:
        job_set_id: the id of the job set.
        backend_name: the name of the backend it ran on.
        success: False when any experiment's data is missing.
    """

    def __init__(
        self,
        job_set_id: str,
        backend_name: str | None,
        index: ExperimentIndex,
        plan: Plan,
        records: list[JobRecord | None],
        partial: bool,
    ):
        self.job_set_id = job_set_id
        self.backend_name = backend_name
        self._index = index
        self._plan = plan
        self._records = records
        self._partial = partial
        self._merged: dict[int, ExperimentRecord] = {}
        available = np.ones(plan.n_experiments, dtype=bool)
        for spec, record in zip(plan.jobs, records):
            if record is None:
                available[spec.start : spec.stop] = False
            elif not record.success:
                successes = getattr(record, "successes", None)  # known without decoding
                ok = (
                    successes()[: spec.stop - spec.start].tolist()
                    if successes is not None
                    else [e.success for e in record.experiments[: spec.stop - spec.start]]
                )
                ok += [False] * (spec.stop - spec.start - len(ok))
                available[spec.start : spec.stop] &= np.array(ok, dtype=bool)
        self._available = available
        self.success = bool(available.all())

    # -- look-up -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._plan.n_experiments

    def missing(self) -> list[int]:
        """Global indices of the experiments whose data is missing."""
        return np.flatnonzero(~self._available).tolist()

    def _experiment(self, experiment: Any, keep: bool = True) -> ExperimentRecord:
        """The record of an experiment (its parts merged); without ``keep``, read for one use:
        an experiment that ran as one part is then not kept (see ``JobRecord.peek``)."""
        i = self._index.resolve(experiment)
        merged = self._merged.get(i)
        if merged is not None:
            return merged
        if not self._available[i]:
            raise ManagedResultDataNotAvailable(
                f"the data of experiment {experiment!r} (global index {i}) is not available: "
                "its job failed, was cancelled, was never submitted, or its result was not fetched"
                + (
                    ""
                    if self._partial
                    else "; results(partial=True) returns the experiments "
                    "that succeeded inside failed jobs"
                )
            )
        parts = self._plan.parts(i)
        if not keep and len(parts) == 1:
            job_index, k = parts[0]
            return self._records[job_index].peek(k)
        merged = self._merged[i] = merge_parts(
            [self._records[job_index].experiments[k] for job_index, k in parts]
        )
        return merged

    def _all(self, experiment: Any) -> list[Any]:
        if experiment is None:
            return list(range(len(self)))
        return [experiment]

    # -- qiskit.result.Result -----------------------------------------------------------------

    def data(self, experiment: Any = None) -> dict:
        """The raw data of an experiment, as ``Result.data`` gives it (counts and memory in hex).

        Raises:
            JobManagerJobNotFound: no such experiment.
            ManagedResultDataNotAvailable: its data is missing.
        """
        if experiment is None:
            experiment = self._only_experiment()
        return self._experiment(experiment).to_experiment_result().data.to_dict()

    def _only_experiment(self) -> int:
        if len(self) != 1:
            raise QiskitError("You have to select a circuit when there is more than one available")
        return 0

    def get_counts(self, experiment: Any = None) -> Counts | list[Counts]:
        """The histogram of an experiment, exactly as ``Result.get_counts`` gives it.

        Args:
            experiment: name, global index or circuit; None for every experiment.

        Returns:
            A ``Counts`` (a dict of bitstrings with register spacing), or a list of them when
            ``experiment`` is None and the set has several experiments.

        Raises:
            JobManagerJobNotFound: no such experiment.
            ManagedResultDataNotAvailable: its data is missing.
            QiskitError: the experiment has no counts.
        """
        out = [self._counts(key) for key in self._all(experiment)]
        return out[0] if len(out) == 1 else out

    def _counts(self, key: Any) -> Counts | dict:
        i = self._index.resolve(key)
        if self._available[i] and i not in self._merged:
            parts = self._plan.parts(i)
            if len(parts) == 1:  # a histogram kept whole and read at once, when it can be
                job_index, k = parts[0]
                fast = getattr(self._records[job_index], "counts_and_header", None)
                got = None if fast is None else fast(k)
                if got is not None:
                    return _columnar_counts(*got)
        record = self._experiment(i, keep=False)
        header = record.header
        if "counts" in record.data:
            # kept as the backend spelled them: qiskit's own Counts reads them
            kept = {
                k: v for k, v in header.items() if k in ("time_taken", "creg_sizes", "memory_slots")
            }
            return Counts(fresh(record.data["counts"]), **fresh(kept))
        if record.counts is not None:
            return _counts_from_arrays(record)
        if "statevector" in record.data:
            vec = postprocess.format_statevector(fresh(record.data["statevector"]))
            return Statevector(vec).probabilities_dict(decimals=15)
        raise QiskitError(f'No counts for experiment "{key!r}"')

    def get_memory(self, experiment: Any = None) -> list | np.ndarray:
        """The per-shot memory of an experiment, exactly as ``Result.get_memory`` gives it.

        Raises:
            JobManagerJobNotFound: no such experiment.
            ManagedResultDataNotAvailable: its data is missing.
            QiskitError: the experiment has no memory (run with ``memory=True``).
        """
        if experiment is None:
            experiment = self._only_experiment()
        record = self._experiment(experiment)
        header = record.header
        if record.memory is not None and "memory" not in record.data:
            return kernels.format_bits(
                record.memory, header.get("memory_slots"), header.get("creg_sizes")
            )
        memory = fresh(record.data.get("memory"))
        if memory is None:
            raise QiskitError(
                f'No memory for experiment "{experiment!r}". Run with memory=True to keep it.'
            )
        level = record.meas_level
        if level == MeasLevel.CLASSIFIED:
            return postprocess.format_level_2_memory(memory, header or None)
        if level == MeasLevel.KERNELED:
            return postprocess.format_level_1_memory(memory)
        if level == MeasLevel.RAW:
            return postprocess.format_level_0_memory(memory)
        raise QiskitError(f"Measurement level {level} is not supported")

    def get_statevector(self, experiment: Any = None, decimals: int | None = None) -> Any:
        """The final statevector of an experiment, as ``Result.get_statevector`` gives it.

        Raises:
            QiskitError: no statevector for the experiment (or it is missing/unknown).
        """
        return self._formatted(experiment, "statevector", postprocess.format_statevector, decimals)

    def get_unitary(self, experiment: Any = None, decimals: int | None = None) -> Any:
        """The unitary of an experiment, as ``Result.get_unitary`` gives it.

        Raises:
            QiskitError: no unitary for the experiment (or it is missing/unknown).
        """
        return self._formatted(experiment, "unitary", postprocess.format_unitary, decimals)

    def _formatted(self, experiment: Any, key: str, fmt: Any, decimals: int | None) -> Any:
        if experiment is None:
            experiment = self._only_experiment()
        record = self._experiment(experiment)
        if key not in record.data:
            raise QiskitError(f'No {key} for experiment "{experiment!r}"')
        return fmt(fresh(record.data[key]), decimals=decimals)

    def combine_results(self) -> Result:
        """One ``qiskit.result.Result`` with every experiment, in submission order.

        Raises:
            ManagedResultDataNotAvailable: some experiment's data is missing (``success`` is False).
        """
        if not self.success:
            raise not_combinable("experiment", self.missing())
        fields = fresh(next(r for r in self._records if r is not None).fields)
        fields["job_id"] = self.job_set_id
        fields["success"] = True
        results = [self._experiment(i).to_experiment_result() for i in range(len(self))]
        return Result(results=results, **fields)

    def to_dict(self) -> dict:
        """The combined result as a dictionary, as ``Result.to_dict`` gives it.

        Raises:
            ManagedResultDataNotAvailable: some experiment's data is missing.
        """
        return self.combine_results().to_dict()

    # -- beyond Result: arrays from the merge engine -------------------------------------------

    def counts_arrays(self, experiment: Any) -> tuple[np.ndarray, np.ndarray]:
        """The histogram as (outcome keys, counts) arrays, read-only.

        Keys are ``uint64`` for up to 64 clbits, big-endian packed-bit rows (``uint8``) beyond.

        Raises:
            QiskitError: the experiment has no counts.
        """
        record = self._experiment(experiment)
        if record.counts is None:
            raise QiskitError(f'No counts for experiment "{experiment!r}"')
        return _read_only(record.counts[0]), _read_only(record.counts[1])

    def memory_array(self, experiment: Any) -> np.ndarray:
        """Per-shot outcomes, read-only: integers (up to 64 clbits) or packed-bit rows (wider).

        Raises:
            QiskitError: the experiment has no level-2 memory.
        """
        record = self._experiment(experiment)
        if record.memory is None:
            raise QiskitError(f'No memory for experiment "{experiment!r}"')
        return _read_only(record.memory)

    def marginal_counts(self, experiment: Any, indices: list[int]) -> dict[str, int]:
        """Counts of the clbits ``indices`` only, as ``qiskit.result.marginal_distribution`` gives.

        Bit ``j`` of each key (from the right) is clbit ``indices[j]``.

        Raises:
            ValueError: an index is out of range or repeated.
        """
        record = self._experiment(experiment)
        keys, values = self._histogram(record, experiment)
        indices = [int(i) for i in indices]
        if values.dtype.kind == "f":
            # counts that are not integers: marginalise each key, then add up the weights
            marginal = kernels.marginal_memory(keys, indices, record.width)
            keys, where = np.unique(marginal, axis=0, return_inverse=True)
            values = np.bincount(where.reshape(-1), weights=values, minlength=len(keys))
        else:
            keys, values = kernels.marginal_counts(keys, values, indices, record.width)
        return dict(zip(kernels.format_bits(keys, len(indices), None), values.tolist()))

    @staticmethod
    def _histogram(record: ExperimentRecord, experiment: Any) -> tuple[np.ndarray, np.ndarray]:
        """(keys, counts) of an experiment: the merge engine's arrays, or for counts kept as the
        backend sent them because they are not integers (quasi-probabilities, say), their keys
        as outcomes and their values as floats."""
        if record.counts is not None:
            return record.counts
        counts = record.data.get("counts")
        if isinstance(counts, dict):
            try:
                keys = outcomes_at(list(counts), record.width)
                values = np.array([float(v) for v in counts.values()], dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise QiskitError(
                    f'The counts of experiment "{experiment!r}" are not outcomes with numeric '
                    f"counts ({exc}); read them with get_counts()"
                ) from exc
            return keys, values
        raise QiskitError(f'No counts for experiment "{experiment!r}"')

    def marginal_memory(self, experiment: Any, indices: list[int]) -> np.ndarray:
        """Per-shot outcomes of the clbits ``indices`` only, as an array (see :meth:`memory_array`).

        Bit ``j`` of each outcome is clbit ``indices[j]``. Unlike ``qiskit.result.marginal_memory``
        on Aer's hex memory (whose strings have no leading zeros), the bits are always right.

        Raises:
            ValueError: an index is out of range or repeated.
            QiskitError: the experiment has no level-2 memory.
        """
        record = self._experiment(experiment)
        if record.memory is None:
            raise QiskitError(f'No memory for experiment "{experiment!r}"')
        return kernels.marginal_memory(record.memory, [int(i) for i in indices], record.width)

    def expectation_value(self, experiment: Any, pauli: str) -> float:
        """The expectation value of a diagonal Pauli string (``Z`` and ``I``) from the counts.

        The string is read as qiskit reads one: its rightmost letter acts on clbit 0.

        Raises:
            ValueError: a letter other than Z or I, or a length other than the clbit count.
        """
        record = self._experiment(experiment)
        keys, values = self._histogram(record, experiment)
        if not isinstance(pauli, str) or set(pauli.upper()) - {"Z", "I"}:
            raise ValueError(f"pauli must be a string of Z and I, got {pauli!r}")
        if len(pauli) != record.width:
            raise ValueError(
                f"pauli {pauli!r} has {len(pauli)} letters; experiment {experiment!r} has "
                f"{record.width} clbits"
            )
        mask = 0
        for k, letter in enumerate(reversed(pauli.upper())):
            if letter == "Z":
                mask |= 1 << k
        if values.dtype.kind != "f":
            return float(kernels.expectation_z(keys, values, mask))
        # counts that are not integers: the weighted parity, in numpy
        z = [k for k in range(record.width) if mask >> k & 1]
        parity = (
            np.zeros(len(keys), dtype=np.uint64)
            if not z
            else kernels.marginal_memory(keys, z, record.width)
        )
        odd = _parity(parity)
        total = values.sum()
        return float(np.dot(values, 1.0 - 2.0 * odd) / total) if total else float("nan")

    def __repr__(self) -> str:
        return (
            f"ManagedResults(job_set_id={self.job_set_id!r}, backend_name={self.backend_name!r}, "
            f"experiments={len(self)}, success={self.success})"
        )

    def _repr_html_(self) -> str:
        """The notebook view (:mod:`qjm.notebook`)."""
        from qjm.notebook import results_html

        return results_html(self)

    def plot_histogram(self, experiment: Any, **kwargs: Any) -> Any:
        """qiskit's ``plot_histogram`` of ``get_counts(experiment)`` (a list of experiments:
        compared, with a legend); ``path=`` or ``filename=`` saves it, other keywords go to
        qiskit. Returns the matplotlib Figure (needs ``qjm[plot]``)."""
        from qjm.plots import results_histogram

        return results_histogram(self, experiment, **kwargs)
