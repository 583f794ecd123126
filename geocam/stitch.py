"""Stitch per-window CAMs and probabilities into per-block rasters (pure; no I/O).

Each window's raw CAM (feature grid, e.g. 2 x 2 cells for 64 px) is upsampled bilinearly to the
window, multiplied by a smooth window weight (``sin^2`` taper, which sums to a constant for
stride = size / 2 and keeps seams invisible), and added to sum and weight accumulators
(STYLE C8). Hits are counted in uint16. A block is finalised once every window touching it has
been added: ``value = sum / weight``, NaN where no window landed or the scene is nodata.
Raw values are kept; the scene is normalised once, later, from the per-class scene maxima.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

#: Class value written where a pixel has no class (nodata of ``classes.tif``).
NO_CLASS = 255


@lru_cache(maxsize=16)
def window_weight(size_px: int) -> npt.NDArray[np.float32]:
    """Smooth blending weight of a window, ``(rows, cols)`` float32, in (0, 1].

    ``w(i, j) = s(i) * s(j)`` with ``s(i) = sin^2(pi * (i + 0.5) / size_px)``: windows at half
    overlap sum to a constant, and the edge pixels keep a small positive weight so a pixel covered
    by one window only still gets its value.

    Args:
        size_px: window edge in pixels.
    """
    i = np.arange(size_px, dtype=np.float64)
    s = np.sin(np.pi * (i + 0.5) / size_px) ** 2
    w = np.outer(s, s).astype(np.float32)
    w.setflags(write=False)
    return w


@lru_cache(maxsize=16)
def upsample_matrix(out_px: int, in_cells: int) -> npt.NDArray[np.float32]:
    """Bilinear interpolation matrix ``(out_px, in_cells)`` (torch ``align_corners=False``).

    Args:
        out_px: output length in pixels.
        in_cells: input length in feature cells.
    """
    m = np.zeros((out_px, in_cells), dtype=np.float64)
    scale = in_cells / out_px
    for o in range(out_px):
        src = max((o + 0.5) * scale - 0.5, 0.0)
        i0 = min(int(np.floor(src)), in_cells - 1)
        i1 = min(i0 + 1, in_cells - 1)
        frac = src - i0
        m[o, i0] += 1.0 - frac
        m[o, i1] += frac
    out = m.astype(np.float32)
    out.setflags(write=False)
    return out


def upsample_cams(cams: npt.NDArray[np.float32], size_px: int) -> npt.NDArray[np.float32]:
    """Upsample raw CAMs from the feature grid to the window, bilinearly.

    Args:
        cams: ``(..., classes, cells_r, cells_c)`` float32.
        size_px: window edge in pixels.

    Returns:
        ``(..., classes, size_px, size_px)`` float32.
    """
    mr = upsample_matrix(size_px, cams.shape[-2])
    mc = upsample_matrix(size_px, cams.shape[-1])
    out: npt.NDArray[np.float32] = np.einsum("rh,...hw,cw->...rc", mr, cams, mc, optimize=True)
    return out.astype(np.float32, copy=False)


@dataclass(frozen=True, slots=True)
class BlockResult:
    """A finalised block.

    Attributes:
        cam: ``(classes, rows, cols)`` float32 raw blended CAM; NaN where not covered.
        prob: ``(classes, rows, cols)`` float32 blended window probabilities; NaN where not covered.
        covered: ``(rows, cols)`` bool, True where at least one window landed and the scene is
            valid.
        hits: ``(rows, cols)`` uint16 number of windows that landed on each pixel.
    """

    cam: npt.NDArray[np.float32]
    prob: npt.NDArray[np.float32]
    covered: npt.NDArray[np.bool_]
    hits: npt.NDArray[np.uint16]


class BlockAccumulator:
    """Weighted sum and hit accumulators of one output block.

    Args:
        n_classes: number of classes.
        origin_rc: (row, col) of the block's top-left pixel in the scene grid.
        shape_rc: (rows, cols) of the block.
    """

    def __init__(
        self, n_classes: int, origin_rc: tuple[int, int], shape_rc: tuple[int, int]
    ) -> None:
        rows, cols = shape_rc
        self.origin_rc = origin_rc
        self.shape_rc = shape_rc
        self.cam_sum = np.zeros((n_classes, rows, cols), dtype=np.float32)
        self.prob_sum = np.zeros((n_classes, rows, cols), dtype=np.float32)
        self.weight_sum = np.zeros((rows, cols), dtype=np.float32)
        self.hits = np.zeros((rows, cols), dtype=np.uint16)

    def add(
        self,
        cam_px: npt.NDArray[np.float32],
        prob: npt.NDArray[np.float32],
        origin_rc: tuple[int, int],
    ) -> None:
        """Add one window; the parts outside the block are ignored.

        Args:
            cam_px: ``(classes, size, size)`` raw CAM upsampled to the window.
            prob: ``(classes,)`` the window's probabilities.
            origin_rc: (row, col) of the window's top-left pixel in the scene grid.
        """
        size = cam_px.shape[-1]
        r0 = origin_rc[0] - self.origin_rc[0]
        c0 = origin_rc[1] - self.origin_rc[1]
        rows, cols = self.shape_rc
        br0, bc0 = max(r0, 0), max(c0, 0)
        br1, bc1 = min(r0 + size, rows), min(c0 + size, cols)
        if br1 <= br0 or bc1 <= bc0:
            return
        wr = slice(br0 - r0, br1 - r0)
        wc = slice(bc0 - c0, bc1 - c0)
        weight = window_weight(size)[wr, wc]
        dst = (slice(br0, br1), slice(bc0, bc1))
        self.cam_sum[:, dst[0], dst[1]] += cam_px[:, wr, wc] * weight
        self.prob_sum[:, dst[0], dst[1]] += prob[:, None, None] * weight
        self.weight_sum[dst] += weight
        self.hits[dst] += 1

    def finalise(self, valid: npt.NDArray[np.bool_] | None = None) -> BlockResult:
        """Blend: sum / weight where covered, NaN elsewhere.

        Args:
            valid: ``(rows, cols)`` scene validity; invalid pixels become NaN too.
        """
        covered = self.hits > 0
        if valid is not None:
            covered &= valid
        cam = np.full_like(self.cam_sum, np.nan)
        prob = np.full_like(self.prob_sum, np.nan)
        np.divide(self.cam_sum, self.weight_sum, out=cam, where=covered[None])
        np.divide(self.prob_sum, self.weight_sum, out=prob, where=covered[None])
        return BlockResult(cam=cam, prob=prob, covered=covered, hits=self.hits.copy())


def stitch_tiles(
    cams: npt.NDArray[np.float32],
    probs: npt.NDArray[np.float32],
    origins_rc: Sequence[tuple[int, int]],
    shape_rc: tuple[int, int],
    size_px: int,
) -> BlockResult:
    """Stitch windows into one raster covering ``shape_rc`` (small scenes and tests).

    Args:
        cams: ``(windows, classes, cells_r, cells_c)`` raw CAMs.
        probs: ``(windows, classes)`` probabilities.
        origins_rc: (row, col) of each window in the grid.
        shape_rc: (rows, cols) of the output.
        size_px: window edge in pixels.
    """
    acc = BlockAccumulator(cams.shape[1], (0, 0), shape_rc)
    up = upsample_cams(cams, size_px)
    for k, origin in enumerate(origins_rc):
        acc.add(up[k], probs[k], origin)
    return acc.finalise()


def class_map(
    cam: npt.NDArray[np.float32],
    bias: npt.NDArray[np.float32],
    covered: npt.NDArray[np.bool_],
) -> npt.NDArray[np.uint8]:
    """Winning class per pixel from the local logits ``CAM_c + b_c`` (their window mean is the logit).

    Args:
        cam: ``(classes, rows, cols)`` raw blended CAM.
        bias: ``(classes,)`` the linear head's bias.
        covered: ``(rows, cols)`` pixels that have a value.

    Returns:
        ``(rows, cols)`` uint8 class index, :data:`NO_CLASS` where not covered.
    """
    local = np.where(covered[None], cam, 0.0) + bias[:, None, None]
    out = np.argmax(local, axis=0).astype(np.uint8)
    out[~covered] = NO_CLASS
    return out


def running_max(
    current: npt.NDArray[np.float32], cam: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """Update the per-class scene maximum of the ReLU'd CAM with a block.

    Args:
        current: ``(classes,)`` maxima so far.
        cam: ``(classes, rows, cols)`` raw blended CAM (NaN where not covered).
    """
    flat = cam.reshape(cam.shape[0], -1)
    block = np.max(np.where(np.isnan(flat), 0.0, flat), axis=1, initial=0.0)
    out: npt.NDArray[np.float32] = np.maximum(current, block).astype(np.float32)
    return out


def normalise(
    cam: npt.NDArray[np.float32], scene_max: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """Scene-normalised heat: ``relu(cam) / scene_max`` per class, in [0, 1]; NaN stays NaN.

    Args:
        cam: ``(classes, rows, cols)`` raw blended CAM.
        scene_max: ``(classes,)`` per-class maximum of the ReLU'd CAM over the whole scene.
    """
    denom = np.where(scene_max > 0, scene_max, 1.0).astype(np.float32)[:, None, None]
    out = np.maximum(cam, 0.0) / denom
    return out.astype(np.float32, copy=False)
