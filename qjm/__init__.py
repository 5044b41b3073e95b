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
