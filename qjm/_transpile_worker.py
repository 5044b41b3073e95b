"""A transpiling worker process: ``python -m qjm._transpile_worker``, started by
:class:`qjm.transpiling.Transpiler`.

On stdin: an 8-byte length and the pass manager (``dill``, made by the parent), then any number
of 8-byte lengths and QPY files of circuits; a length of 0 ends it. On stdout, for each: a status
byte (``0`` done, ``1`` failed), an 8-byte length, and the transpiled circuits as QPY (or the
error message). A fresh interpreter, not a fork: the parent's threads and its ``__main__`` are
not involved.
"""

from __future__ import annotations

import io
import os
import struct
import sys


def _read(stream, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError
    return data


def main() -> int:
    os.environ["QISKIT_IN_PARALLEL"] = "TRUE"  # qiskit starts no process pool of its own here
    import dill
    from qiskit import qpy

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    try:
        (size,) = struct.unpack("<Q", _read(stdin, 8))
        pass_manager = dill.loads(_read(stdin, size))  # noqa: S301 - from the parent process
        while True:
            (size,) = struct.unpack("<Q", _read(stdin, 8))
            if size == 0:
                return 0
            try:
                circuits = qpy.load(io.BytesIO(_read(stdin, size)))
                out = pass_manager.run(list(circuits), num_processes=1)
                buffer = io.BytesIO()
                qpy.dump(list(out) if isinstance(out, list) else [out], buffer)
                status, body = 0, buffer.getvalue()
            except EOFError:
                raise
            except Exception as exc:  # noqa: BLE001 - sent back to the job that asked
                status, body = 1, f"{type(exc).__name__}: {exc}".encode()
            stdout.write(struct.pack("<BQ", status, len(body)) + body)
            stdout.flush()
    except EOFError:  # the parent went away
        return 0


if __name__ == "__main__":
    sys.exit(main())
