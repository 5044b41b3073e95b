"""qjm: run very large batches of quantum circuits on Qiskit backends as one job set.

>>> import qjm
>>> manager = qjm.JobManager()
>>> job_set = manager.run(circuits, backend=AerSimulator(), shots=1000)   # doctest: +SKIP
>>> results = job_set.results()                                           # doctest: +SKIP
"""

from qjm import exceptions, logs
from qjm.exceptions import (
    IBMQJobManagerError,
    IBMQJobManagerInvalidStateError,
    IBMQJobManagerJobNotFound,
    IBMQJobManagerTimeoutError,
    IBMQJobManagerUnknownJobSet,
    IBMQManagedResultDataNotAvailable,
    JobManagerError,
    JobManagerInvalidStateError,
    JobManagerJobNotFound,
    JobManagerTimeoutError,
    JobManagerUnknownJobSet,
    ManagedResultDataNotAvailable,
)
from qjm.jobmanager import JobManager
from qjm.managedjob import ManagedJob
from qjm.managedjobset import ManagedJobSet
from qjm.managedprimitives import ManagedEstimator, ManagedPrimitiveJob, ManagedSampler
from qjm.managedresults import ManagedResults
from qjm.primitiveresults import ManagedPrimitiveResults
from qjm.retry import RetryPolicy

__version__ = "0.1.0"

# qjm logs through the "qjm" logger hierarchy (each module its own logger): silent until the
# application configures logging (a NullHandler on "qjm"; ``qjm -v`` shows INFO on stderr)
logs.silence()

# The names of the old IBMQ job manager, so that a script ports by changing its import.
IBMQJobManager = JobManager

_DASK_NAMES = frozenset({"DaskBackend", "DaskSampler", "DaskEstimator"})


def __getattr__(name: str):
    # qjm[dask] (qjm/dask.py) is imported on first use: ``import qjm`` does not import dask,
    # and without dask the ImportError says what to install
    if name in _DASK_NAMES:
        from qjm import dask

        return getattr(dask, name)
    raise AttributeError(f"module 'qjm' has no attribute {name!r}")


__all__ = [
    "JobManager",
    "ManagedJobSet",
    "ManagedJob",
    "ManagedResults",
    "ManagedPrimitiveResults",
    "ManagedSampler",
    "ManagedEstimator",
    "ManagedPrimitiveJob",
    "RetryPolicy",
    "exceptions",
    "JobManagerError",
    "JobManagerInvalidStateError",
    "JobManagerTimeoutError",
    "JobManagerJobNotFound",
    "ManagedResultDataNotAvailable",
    "JobManagerUnknownJobSet",
    "IBMQJobManager",
    "IBMQJobManagerError",
    "IBMQJobManagerInvalidStateError",
    "IBMQJobManagerTimeoutError",
    "IBMQJobManagerJobNotFound",
    "IBMQManagedResultDataNotAvailable",
    "IBMQJobManagerUnknownJobSet",
]
