"""Process memory for a scene run's passes: glibc malloc settings, shared libraries' idle pages.

Each is a no-op where the libc or the kernel lacks it.

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
- :func:`drop_library_pages` as pass 1 starts: importing torch leaves far more library code
  resident than a run executes. PyPI's torch is a CUDA build whose GPU libraries (cuBLAS, NVRTC,
  nvJitLink, libtorch_cuda) a CPU run never calls, and operator registration runs once at
  import. Read-only, unmodified pages are dropped (``MADV_DONTNEED``); a page still in use comes
  back from the file at its next touch, so nothing but the resident size changes.

In a program of your own::

    from geocam.runtime import MALLOC_TUNING
    allocator.one_arena()
    run_scene(scene, model, out_dir, config, hooks=MALLOC_TUNING)

Measurements: benchmarks/README.md.
"""

from __future__ import annotations

import ctypes
import logging
import re
from pathlib import Path

log = logging.getLogger(__name__)

# mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MADV_DONTNEED = 4  # linux/mman.h

_MAPPING = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")

#: Shared objects (libraries, Python extension modules), by path.
SHARED_OBJECT = re.compile(r"\.so(\.[0-9]+)*$")

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
    """Keep freed activations in the heap for the next batch; drop idle library pages (pass 1)."""
    if (libc := _libc()) is not None:
        libc.mallopt(M_MMAP_THRESHOLD, MODEL_MMAP_THRESHOLD_BYTES)
        libc.mallopt(M_TRIM_THRESHOLD, MODEL_TRIM_THRESHOLD_BYTES)
        dropped = drop_library_pages()
        log.debug("pass 1: dropped %.0f MiB of resident library pages", dropped / 2**20)


def for_rasters() -> None:
    """Return the model stage's freed memory; map large arrays (pass 2)."""
    if (libc := _libc()) is not None:
        trim()
        libc.mallopt(M_MMAP_THRESHOLD, RASTER_THRESHOLD_BYTES)
        libc.mallopt(M_TRIM_THRESHOLD, RASTER_THRESHOLD_BYTES)


def drop_library_pages(smaps: Path = Path("/proc/self/smaps")) -> int:
    """Drop this process's resident pages of shared objects' read-only, unmodified mappings.

    Only mappings that are not writable and hold no anonymous (copy-on-write) page are dropped,
    so every page comes back unchanged from the file when it is touched again; other processes'
    mappings of the same files keep theirs.

    Returns:
        The bytes that were resident in the dropped mappings (0 without ``/proc``).
    """
    if (libc := _libc()) is None or not smaps.exists():
        return 0
    madvise = libc.madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    dropped = 0
    for start, end, rss_bytes in _clean_library_mappings(smaps.read_text()):
        if madvise(start, end - start, MADV_DONTNEED) == 0:
            dropped += rss_bytes
    return dropped


def _clean_library_mappings(smaps_text: str) -> list[tuple[int, int, int]]:
    """(start, end, resident bytes) of shared-object mappings that are read-only and unmodified."""
    found: list[tuple[int, int, int]] = []
    mapping: tuple[int, int, bool] | None = None  # start, end, a read-only shared object
    rss_bytes = 0
    for line in smaps_text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if _MAPPING.match(line):
            start, end = (int(x, 16) for x in fields[0].split("-"))
            candidate = (
                len(fields) == 6 and "w" not in fields[1] and SHARED_OBJECT.search(fields[5])
            )
            mapping = (start, end, bool(candidate))
        elif mapping is not None and mapping[2] and fields[0] == "Rss:":
            rss_bytes = int(fields[1]) << 10
        elif mapping is not None and mapping[2] and fields[0] == "Anonymous:":
            if int(fields[1]) == 0 and rss_bytes:
                found.append((mapping[0], mapping[1], rss_bytes))
            mapping = None
    return found
