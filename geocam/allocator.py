"""glibc malloc settings for the two passes of a scene run (no-op where malloc is not glibc's).

They change speed and memory, never results. The library never applies them on its own: the
owner of a process (the CLI, a Dask worker) calls :func:`one_arena` once and passes
:data:`geocam.runtime.MALLOC_TUNING` to the run, which calls :func:`for_model`,
:func:`for_rasters` and :func:`trim` as its stages start.

- Pass 1 (the model): each batch's activations are freed and allocated again. With glibc's
  defaults they often come from fresh ``mmap`` calls whose pages fault in anew every batch, or
  from heap memory trimmed back to the kernel between batches; a heap that is kept serves them
  without that cost.
- Pass 2 (rasters and polygons): the model's freed memory goes back to the kernel, and large
  arrays are mapped and unmapped again, so that peak RSS stays that of the rasters in flight.
- One arena for all threads: memory freed by one thread can serve another. Set it before the
  run starts its threads.
- :func:`trim` between the output steps: the polygon pieces freed by the merge are scattered
  through the heap, where glibc would keep them.

In a program of your own::

    from geocam.runtime import MALLOC_TUNING
    allocator.one_arena()
    run_scene(scene, model, out_dir, config, hooks=MALLOC_TUNING)

Measurements: benchmarks/README.md.
"""

from __future__ import annotations

import ctypes

# mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

MODEL_MMAP_THRESHOLD_BYTES = 32 << 20
MODEL_TRIM_THRESHOLD_BYTES = 64 << 20
RASTER_THRESHOLD_BYTES = 128 << 10  # glibc's initial value of both


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt  # noqa: B018 - glibc and musl have it; macOS does not
        libc.malloc_trim  # noqa: B018 - glibc only
    except (OSError, AttributeError, TypeError):  # TypeError: CDLL(None) on Windows
        return None
    return libc


def trim() -> None:
    """Give the heap's free pages back to the kernel (changes no setting; for libraries too)."""
    if (libc := _libc()) is not None:
        libc.malloc_trim(0)


def one_arena() -> None:
    """Serve every thread from one malloc arena."""
    if (libc := _libc()) is not None:
        libc.mallopt(M_ARENA_MAX, 1)


def for_model() -> None:
    """Keep freed activations in the heap for the next batch (pass 1)."""
    if (libc := _libc()) is not None:
        libc.mallopt(M_MMAP_THRESHOLD, MODEL_MMAP_THRESHOLD_BYTES)
        libc.mallopt(M_TRIM_THRESHOLD, MODEL_TRIM_THRESHOLD_BYTES)


def for_rasters() -> None:
    """Return the model stage's freed memory; map large arrays (pass 2)."""
    if (libc := _libc()) is not None:
        trim()
        libc.mallopt(M_MMAP_THRESHOLD, RASTER_THRESHOLD_BYTES)
        libc.mallopt(M_TRIM_THRESHOLD, RASTER_THRESHOLD_BYTES)
