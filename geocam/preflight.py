"""Preflight: what a scene run will need (windows, memory, temporary disk), checked before any work.

The estimate is arithmetic on the scene grid and the settings; nothing is read or allocated.
:func:`check` refuses a run that needs more windows than ``max_windows`` or more memory than
``max_memory_mib`` (by default the memory the machine has available) with a
:class:`~geocam.errors.LimitError` that gives the numbers and the option that overrides the
limit, and warns (:class:`~geocam.errors.DiskSpaceWarning`) when the output folder's free space
may not hold the temporary files and outputs.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from .config import SceneConfig
from .errors import DiskSpaceWarning, LimitError
from .outputs import free_mib
from .stitch import lattice_px as stitch_lattice_px

log = logging.getLogger(__name__)

_MIB = float(1 << 20)
#: Downsampling of the CAM's feature map (ResNets: 32).
FEATURE_STRIDE_PX = 32


@dataclass(frozen=True, slots=True)
class Estimate:
    """What one scene run needs.

    Attributes:
        windows: windows of the grid (scored or skipped as nodata: each is read).
        grid_rc: windows per column and per row of the grid.
        lattice_rc: cells of the stitching lattice (rows, cols).
        lattice_px: lattice cell edge in pixels.
        lattice_mib: memory of the lattice's sums and counts.
        blocks_mib: memory of the output blocks in flight in pass 2.
        disk_mib: upper bound of the temporary files plus outputs (uncompressed sizes; the
            files are compressed, typically to a fraction of this).
        disk_free_mib: free space in the output folder, None if unknown.
    """

    windows: int
    grid_rc: tuple[int, int]
    lattice_rc: tuple[int, int]
    lattice_px: int
    lattice_mib: float
    blocks_mib: float
    disk_mib: float
    disk_free_mib: float | None

    @property
    def memory_mib(self) -> float:
        """Lattice plus blocks in flight (the model and the runtime come on top)."""
        return self.lattice_mib + self.blocks_mib


def estimate(
    shape_rc: tuple[int, int],
    n_classes: int,
    window_px: int,
    stride_px: int,
    row_offsets: Sequence[int],
    col_offsets: Sequence[int],
    config: SceneConfig,
    out_dir: Path,
    input_scale: float = 1.0,
) -> Estimate:
    """Estimate a run's windows, memory and disk from its grid (pure arithmetic).

    Args:
        shape_rc: (rows, cols) of the scene.
        n_classes: the model's classes.
        window_px: window edge in pixels.
        stride_px: window step in pixels.
        row_offsets: window top rows.
        col_offsets: window left columns.
        config: the run's settings (threads, block size, sieve halo).
        out_dir: the output folder (for its free space).
        input_scale: the model's resize factor of windows.
    """
    rows, cols = shape_rc
    cells = max(1, round(window_px * input_scale / FEATURE_STRIDE_PX))
    lattice_px = stitch_lattice_px(window_px, cells, stride_px)
    span_r = (max(row_offsets) - min(row_offsets) + window_px) if row_offsets else 0
    span_c = (max(col_offsets) - min(col_offsets) + window_px) if col_offsets else 0
    lattice_rc = (-(-span_r // lattice_px) + 1, -(-span_c // lattice_px) + 1)
    # CellGrid: cam and probability sums and their smoothed means (float32 per class), weights
    # (float32), hits (uint16).
    lattice_bytes = lattice_rc[0] * lattice_rc[1] * (16 * n_classes + 6)
    edge = config.block_px + 2 * config.sieve_px
    in_flight = (config.threads or os.cpu_count() or 1) + 1
    # Rendered CAM and probabilities plus the interpolation's temporaries, per block.
    blocks_bytes = in_flight * 4 * n_classes * edge * edge * 4
    pixels = rows * cols
    pyramid = 4.0 / 3.0 if config.overviews else 1.0
    # Work files (validity, heat with its levels, classes) and the outputs (heat and class COGs).
    disk_bytes = pixels * (1 + 4 * n_classes * pyramid + 1 + 4 * n_classes * pyramid + pyramid)
    return Estimate(
        windows=len(row_offsets) * len(col_offsets),
        grid_rc=(len(row_offsets), len(col_offsets)),
        lattice_rc=lattice_rc,
        lattice_px=lattice_px,
        lattice_mib=lattice_bytes / _MIB,
        blocks_mib=blocks_bytes / _MIB,
        disk_mib=disk_bytes / _MIB,
        disk_free_mib=free_mib(out_dir),
    )


def available_memory_mib() -> float:
    """Memory the machine has available now, in MiB."""
    return float(psutil.virtual_memory().available) / _MIB


def check(
    est: Estimate,
    config: SceneConfig,
    scene: str,
    stride_px: int,
    n_classes: int,
    warn: bool = True,
) -> None:
    """Refuse a run past the limits; warn when the disk may not hold it.

    Args:
        est: the run's estimate.
        config: the run's settings (``max_windows``, ``max_memory_mib``).
        scene: the scene's name, for messages.
        stride_px: the window step, for messages.
        n_classes: the model's classes, for messages.
        warn: warn when the disk may not hold the run.

    Raises:
        LimitError: more windows than ``max_windows``, or more memory than ``max_memory_mib``
            (default: the available memory).
    """
    log.info(
        "preflight %s: %d windows, lattice %d x %d cells (%.0f MiB), blocks %.0f MiB, disk up "
        "to %.0f MiB (%s MiB free)",
        scene,
        est.windows,
        *est.lattice_rc,
        est.lattice_mib,
        est.blocks_mib,
        est.disk_mib,
        "?" if est.disk_free_mib is None else f"{est.disk_free_mib:.0f}",
    )
    if config.max_windows and est.windows > config.max_windows:
        raise LimitError(
            f"scene {scene!r} needs {est.windows:,} windows ({est.grid_rc[0]:,} x "
            f"{est.grid_rc[1]:,} at `stride_px`={stride_px}), more than `max_windows`="
            f"{config.max_windows:,}; crop the scene, raise --stride-px, or pass --max-windows "
            f"{est.windows} (0: no limit)"
        )
    if config.max_memory_mib != 0:
        if config.max_memory_mib is None:
            limit, source = available_memory_mib(), "available on this machine"
        else:
            limit, source = float(config.max_memory_mib), "`max_memory_mib`"
        if est.memory_mib > limit:
            raise LimitError(
                f"scene {scene!r} needs about {est.memory_mib:,.0f} MiB of memory (a stitching "
                f"lattice of {est.lattice_rc[0]:,} x {est.lattice_rc[1]:,} cells of "
                f"{est.lattice_px} px x {n_classes} classes: {est.lattice_mib:,.0f} MiB; blocks "
                f"in flight: {est.blocks_mib:,.0f} MiB), more than the {limit:,.0f} MiB "
                f"{source}; crop the scene, raise --stride-px, lower --block-px, or pass "
                f"--max-memory-mib {math.ceil(est.memory_mib)} (0: no check)"
            )
    if warn and est.disk_free_mib is not None and est.disk_mib > est.disk_free_mib:
        warnings.warn(
            f"scene {scene!r} may need up to {est.disk_mib:,.0f} MiB of disk for temporary "
            f"files and outputs (uncompressed; usually much less) and the output folder has "
            f"{est.disk_free_mib:,.0f} MiB free",
            DiskSpaceWarning,
            stacklevel=2,
        )
