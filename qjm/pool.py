"""The thread pool of a job set: ``concurrent.futures`` futures on daemon worker threads.

``ThreadPoolExecutor`` joins its workers when the interpreter exits, so a backend call that never
returns (a hung ``result()``, a dead connection) keeps a process alive after Ctrl-C or a
``results()`` deadline. qjm's workers are daemon threads the interpreter does not wait for: work
still in flight when the process exits is abandoned, and everything fetched before is already kept
(in memory and in the store).

Work submitted with ``first=True`` runs before work queued without it (the looks that free the
slots of ``max_active_jobs`` go before submissions waiting for a slot); other work runs in the
order it was submitted.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any

_Item = tuple[Future, Callable[..., Any], tuple, dict]


class DaemonPool:
    """A fixed-size pool of daemon threads with ``submit``, ``map`` and ``shutdown`` as in
    ``concurrent.futures.ThreadPoolExecutor``. Threads start on demand, up to ``max_workers``."""

    def __init__(self, max_workers: int, thread_name_prefix: str = "qjm"):
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._max_workers = max_workers
        self._prefix = thread_name_prefix
        self._first: collections.deque[_Item] = collections.deque()
        self._later: collections.deque[_Item] = collections.deque()
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads waiting for work that no submit has claimed yet
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._shutdown = False

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, first: bool = False, **kwargs: Any
    ) -> Future:
        """Run ``fn(*args, **kwargs)`` on a worker; with ``first``, before the work queued
        without it."""
        future: Future = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit to a pool that was shut down")
            (self._first if first else self._later).append((future, fn, args, kwargs))
            if self._idle:
                self._idle -= 1  # claimed now: the next submit starts or wakes another
                self._ready.notify()
            elif len(self._threads) < self._max_workers:
                thread = threading.Thread(
                    target=self._work, name=f"{self._prefix}_{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
        return future

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        futures = [self.submit(fn, item) for item in items]

        def results() -> Iterator[Any]:
            for future in futures:
                yield future.result()

        return results()

    def _next(self) -> _Item | None:
        with self._lock:
            while True:
                if self._first:
                    return self._first.popleft()
                if self._later:
                    return self._later.popleft()
                if self._shutdown:
                    return None
                self._idle += 1  # unclaimed until a submit takes it (and notifies)
                self._ready.wait()

    def _work(self) -> None:
        while True:
            item = self._next()
            if item is None:
                return
            future, fn, args, kwargs = item
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:  # noqa: BLE001 - handed to the future's owner
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del item, future, fn, args, kwargs

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Stop taking work; with ``cancel_futures``, cancel what has not started; with
        ``wait``, wait for the work that has."""
        with self._lock:
            self._shutdown = True
            threads = list(self._threads)
            cancelled = []
            if cancel_futures:
                cancelled = [item[0] for item in (*self._first, *self._later)]
                self._first.clear()
                self._later.clear()
            self._ready.notify_all()
        for future in cancelled:
            future.cancel()
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()
