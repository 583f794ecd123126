"""Where and how the model runs, and the process state a run may touch, scoped.

Device and precision: :func:`torch_device` parses and checks a device name,
:func:`resolve_precision` picks bf16 or fp32 for it, :func:`compute_dtype` names the torch dtype.

Process state (STYLE C17): the library changes none behind its caller. A scene run sets torch's
intra-op threads only inside :func:`torch_threads`, which restores them on every exit path; GDAL
settings go through ``rasterio.Env`` and BLAS limits through ``threadpool_limits``, both scoped.
glibc malloc tuning is opt-in: a run calls the :class:`StageHooks` it is given (none by default),
and the owner of a process (the CLI, a Dask worker through
:class:`geocam.distributed.GeocamWorker`) calls :func:`configure_process` once and passes
:data:`MALLOC_TUNING`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from . import allocator
from .config import Precision
from .errors import ConfigError

log = logging.getLogger(__name__)


def cpu_supports_bf16() -> bool:
    """Whether this CPU runs bf16 matrix products natively (AVX512-BF16 or AMX tiles)."""
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def resolve_precision(precision: Precision, device: torch.device) -> Precision:
    """Pick ``"bf16"`` or ``"fp32"``.

    ``"auto"`` picks bf16 wherever it runs natively: CUDA devices with bf16, and CPUs with
    AVX512-BF16 or AMX (there bf16 is faster; elsewhere it is emulated and slower than fp32).

    Args:
        precision: ``"auto"``, ``"bf16"`` or ``"fp32"``.
        device: the device the model runs on.

    Raises:
        ConfigError: bf16 was asked for on a device that cannot run it.
    """
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
    elif device.type == "cpu":
        ok = cpu_supports_bf16()
    else:
        ok = False
    if precision == "bf16" and not ok:
        raise ConfigError(f"`precision`='bf16' is not supported on device {device}; use fp32")
    if precision == "auto":
        return "bf16" if ok else "fp32"
    return precision


def compute_dtype(precision: str) -> torch.dtype:
    """The torch dtype of a resolved precision (``"bf16"`` or ``"fp32"``)."""
    return torch.bfloat16 if precision == "bf16" else torch.float32


def torch_device(device: str | torch.device) -> torch.device:
    """Parse a device name and check that torch can use it here.

    ``"auto"`` is CUDA when torch sees a GPU, else the CPU.

    Raises:
        ConfigError: not a torch device, or CUDA asked for where there is none.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ConfigError(
            f"`device`={device!r} is not a torch device ({err}); use cpu or cuda"
        ) from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"`device`={device!r} but CUDA is not available here; use --device cpu")
    return dev


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run a block with ``threads`` torch intra-op threads; restore the previous count after.

    Args:
        threads: intra-op thread count (>= 1).
    """
    previous = torch.get_num_threads()
    try:
        if threads != previous:
            torch.set_num_threads(threads)
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def _nothing() -> None:
    pass


@dataclass(frozen=True, slots=True)
class StageHooks:
    """What a scene run calls as its stages start: the process owner's tuning, none by default.

    They change speed and memory, never results.

    Attributes:
        model_pass: called as pass 1 (the model) starts.
        raster_pass: called as pass 2 (rasters and polygons) starts.
        release: called after large, scattered allocations were freed (polygon pieces).
    """

    model_pass: Callable[[], None] = _nothing
    raster_pass: Callable[[], None] = _nothing
    release: Callable[[], None] = _nothing


#: No tuning: what a library call gets.
NO_HOOKS = StageHooks()


#: Memory settings per pass (see :mod:`geocam.allocator`), for the owner of a process.
MALLOC_TUNING = StageHooks(
    model_pass=allocator.for_model, raster_pass=allocator.for_rasters, release=allocator.trim
)


def configure_process(threads: int | None) -> None:
    """Set up a process that runs scenes: one malloc arena, torch's thread count, no idle pages.

    The library pages importing left resident go before the model loads (see
    :func:`geocam.allocator.drop_library_pages`; pass 1 drops them again).

    For the owner of the process only (the CLI, a Dask worker plugin). Call it before the run's
    threads start.

    Args:
        threads: torch intra-op threads; None leaves torch's default. Dask's nanny starts
            workers with ``OMP_NUM_THREADS=1``, so a worker's torch starts with one thread.
    """
    allocator.one_arena()
    allocator.drop_library_pages()
    if threads:
        torch.set_num_threads(threads)
    log.debug("process: one malloc arena, %d torch threads", torch.get_num_threads())
