"""Threads of a local run: a worker started before work, results computed ahead in order."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

log = logging.getLogger(__name__)


def start_worker(pool: ThreadPoolExecutor) -> None:
    """Start a one-thread pool's worker before it gets work that uses open datasets.

    ``submit`` starts the thread; an exception that lands there (Ctrl-C) leaves the thread
    running but unknown to the pool, whose shutdown then does not wait for it. Started with a
    task that touches nothing, the thread can only be lost before any real work is queued.
    """
    pool.submit(int).result()


def ahead[T, U](
    items: Iterator[T], fn: Callable[[T], U], pool: ThreadPoolExecutor, depth: int = 1
) -> Iterator[U]:
    """``map(fn, items)`` in order, ``depth`` results computed in ``pool`` ahead of the one in use.

    Memory stays bounded by ``depth + 1`` results.
    """
    pending: deque[Future[U]] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) > depth:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
