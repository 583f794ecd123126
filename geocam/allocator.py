"""glibc malloc settings for the two passes of a scene run (no-op where malloc is not glibc's).

The CLI owns its process and applies them; library callers may too. They change speed and
memory, never results.

- Pass 1 (the model): each batch's activations (up to about 8 MB each for ResNet50, batch 64,
  bf16) are freed and allocated again. With glibc's defaults they often come from fresh
  ``mmap`` calls whose pages fault in anew every batch, or from heap memory trimmed back to
  the kernel between batches. Serving them from a heap that is kept makes the model stage
  faster (Havel, 2 cores: model 1.65-1.80 s -> 1.35-1.40 s).
- Pass 2 (rasters and polygons): the model's freed memory goes back to the kernel, and large
  arrays are mapped and unmapped again, so that peak RSS stays that of the rasters in flight.
- One arena for all threads: memory freed by one thread can serve another (Havel peak RSS
  about 1030 -> 960 MiB). Set it before the run starts its threads.
- The pipeline itself calls :func:`trim` between its output steps: the polygon pieces freed by
  the merge are scattered through the heap, where glibc keeps them (8000 x 8000 scene at
  stride 32: peak RSS 923 -> 897 MiB, 27 ms).

In a program of your own, follow the stages of :func:`geocam.pipeline.iter_run_scene` (each
starts with an event of ``done`` = 0)::

    allocator.one_arena()
    for event in iter_run_scene(scene, model, out_dir, config):
        if event.done == 0:
            (allocator.for_model if event.stage == "windows" else allocator.for_rasters)()
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
