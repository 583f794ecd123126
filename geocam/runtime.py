"""Process state: a scoped torch thread count, and what the owner of a process sets up.

The library does not change process-wide state behind its caller (STYLE C17). A scene run sets
torch's intra-op threads only inside :func:`torch_threads`, which restores them on every exit
path; GDAL settings go through ``rasterio.Env`` and BLAS limits through ``threadpool_limits``,
both scoped. The owner of a process (the CLI, or a Dask worker through
:class:`geocam.distributed.GeocamWorker`) calls :func:`configure_process` once, and
:func:`stage_allocator` as each stage of a run starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from . import allocator


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run a block with ``threads`` torch intra-op threads; restore the previous count after.

    Args:
        threads: intra-op thread count (>= 1).
    """
    previous = torch.get_num_threads()
    if threads != previous:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def configure_process(threads: int | None) -> None:
    """Set up a process that runs scenes: one malloc arena, and torch's thread count.

    For the owner of the process only (the CLI, a Dask worker plugin). Call it before the run's
    threads start.

    Args:
        threads: torch intra-op threads; None leaves torch's default. Dask's nanny starts
            workers with ``OMP_NUM_THREADS=1``, so a worker's torch starts with one thread.
    """
    allocator.one_arena()
    if threads:
        torch.set_num_threads(threads)


def stage_allocator(stage: str) -> None:
    """Apply the malloc settings of a run's stage (a ``Progress.stage``) as it starts.

    Args:
        stage: ``"windows"`` (the model pass) or ``"blocks"`` (rasters and polygons).
    """
    if stage == "windows":
        allocator.for_model()
    elif stage == "blocks":
        allocator.for_rasters()
