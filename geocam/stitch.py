"""Stitch per-window CAMs and probabilities on a lattice of half feature cells (pure; no I/O).

A window's raw CAM has one value per feature cell (ResNet50: 2 x 2 cells of 32 px for a 64 px
window). Each window's CAM is upsampled bilinearly (as torch's ``align_corners=False``) to the
centres of half cells (16 px for 64/32, or finer when the stride needs it: the lattice is
``gcd(stride, cell / 2)``), multiplied by a ``sin^2`` taper that favours the window's centre and
sums to a constant where windows overlap by half, and added to per-lattice-cell sums of CAM,
probability and weight (STYLE C8): 688 x 688 cells for a Sentinel-2 tile at 16 px.

Once complete, the lattice is smoothed by a binomial ``[1, 4, 6, 4, 1] / 16`` per axis
(:func:`smooth_cells`): the network's position bias (the cell that sees the whole window holds
about twice the others' evidence) and the taper print the window grid, and the maximum over
classes dips between cell centres; the smoothing removes both and keeps objects of a feature
cell. Pixels are rendered from the smoothed lattice on demand, for any window of the scene, by
bilinear interpolation between cell centres. Uncovered cells take no part in either step
(normalised convolution), so values are seamless across blocks and independent of block size.
Raw values are kept; the scene is normalised once, by the per-class maximum (DESIGN.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from .errors import ConfigError

#: Class value written where a pixel has no class (nodata of ``classes.tif``).
NO_CLASS = 255

#: Finest lattice allowed (pixels): finer ones would hold the scene at near pixel resolution.
MIN_LATTICE_PX = 8


def lattice_px(window_px: int, cells: int, stride_px: int) -> int:
    """Edge of the stitching lattice in pixels: ``gcd(stride, cell / 2)``.

    Args:
        window_px: window edge in pixels.
        cells: CAM cells per window and axis.
        stride_px: the grid's stride.

    Raises:
        ConfigError: the window does not split into half CAM cells of whole pixels, or the
            stride and half cell share a lattice finer than :data:`MIN_LATTICE_PX`.
    """
    if cells < 1 or window_px % (2 * cells):
        raise ConfigError(
            f"`window_px`={window_px} does not split into halves of the model's {cells} x "
            f"{cells} CAM cells of whole pixels; use a multiple of {2 * max(cells, 1)} (e.g. 64 "
            "for ResNets)"
        )
    half_cell_px = window_px // (2 * cells)
    out = math.gcd(stride_px, half_cell_px)
    if out < MIN_LATTICE_PX:
        raise ConfigError(
            f"`stride_px`={stride_px} and the model's {2 * half_cell_px} px CAM cells share "
            f"a lattice of {out} px; use a stride that is a multiple of {MIN_LATTICE_PX} (e.g. 32)"
        )
    return out


#: Binomial smoothing of the complete lattice, per axis (taps one lattice cell apart).
SMOOTHING = (1.0, 4.0, 6.0, 4.0, 1.0)


def smooth_cells(
    sums: npt.NDArray[np.float32], weight: npt.NDArray[np.float32], present: npt.NDArray[np.bool_]
) -> npt.NDArray[np.float32]:
    """:data:`SMOOTHING` of the per-cell means ``sums / weight`` along both lattice axes.

    Normalised convolution over the cells present only: near the edge of the covered area, the
    taps that are there count. One class at a time, so temporaries are single-class lattices.

    Args:
        sums: ``(classes, rows, cols)`` weighted sums (any value where not present).
        weight: ``(rows, cols)`` their weights (non-zero everywhere).
        present: ``(rows, cols)`` cells that hold a value.

    Returns:
        ``(classes, rows, cols)`` smoothed means, 0 where not present.
    """
    den = np.maximum(_convolve(_convolve(present.astype(np.float32), 0), 1), np.float32(1e-30))
    out = np.empty(sums.shape, dtype=np.float32)
    for k, cell_sum in enumerate(sums):
        num = np.where(present, cell_sum / weight, np.float32(0.0)).astype(np.float32, copy=False)
        out[k] = np.where(present, _convolve(_convolve(num, 0), 1) / den, np.float32(0.0))
    return out


def _convolve(a: npt.NDArray[np.float32], axis: int) -> npt.NDArray[np.float32]:
    """:data:`SMOOTHING` along ``axis``, zero beyond the ends."""
    out, n = np.zeros_like(a), a.shape[axis]
    for tap, weight in enumerate(SMOOTHING):
        shift = tap - len(SMOOTHING) // 2
        if abs(shift) >= n:
            continue
        dst = [slice(None)] * a.ndim
        src = [slice(None)] * a.ndim
        dst[axis] = slice(max(0, -shift), n - max(0, shift))
        src[axis] = slice(max(0, shift), n - max(0, -shift))
        out[tuple(dst)] += np.float32(weight) * a[tuple(src)]
    return out


@lru_cache(maxsize=16)
def taper(samples: int) -> npt.NDArray[np.float32]:
    """Blending weight along a window, ``sin^2(pi * (i + 0.5) / samples)``, in (0, 1].

    Windows at half overlap sum to a constant, and the edge samples keep a small positive
    weight, so a place covered by one window only still gets its value.
    """
    i = np.arange(samples, dtype=np.float64)
    out = (np.sin(np.pi * (i + 0.5) / samples) ** 2).astype(np.float32)
    out.setflags(write=False)
    return out


@lru_cache(maxsize=16)
def upsample_matrix(out_px: int, in_cells: int) -> npt.NDArray[np.float32]:
    """Bilinear interpolation matrix ``(out_px, in_cells)`` (torch ``align_corners=False``).

    Args:
        out_px: output length in samples.
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


@dataclass(frozen=True, slots=True)
class Rendered:
    """Per-pixel rasters of one window of the scene.

    Attributes:
        cam: ``(classes, rows, cols)`` float32 raw stitched CAM; NaN where not covered.
        prob: ``(classes, rows, cols)`` float32 stitched window probabilities; NaN where not
            covered.
        covered: ``(rows, cols)`` bool, True where the pixel's lattice cell has a window.
    """

    cam: npt.NDArray[np.float32]
    prob: npt.NDArray[np.float32]
    covered: npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class _Axis:
    """Interpolation of one axis: pixel -> two lattice cells and the weight of the second."""

    lo: npt.NDArray[np.intp]
    hi: npt.NDArray[np.intp]
    frac: npt.NDArray[np.float32]
    own: npt.NDArray[np.intp]  # the cell holding the pixel (clipped)
    inside: npt.NDArray[np.bool_]  # the pixel lies on the lattice

    @classmethod
    def of(cls, start_px: int, n_px: int, origin_px: int, cell_px: int, n_cells: int) -> _Axis:
        centre = np.arange(start_px, start_px + n_px, dtype=np.float64) + 0.5 - origin_px
        u = centre / cell_px - 0.5
        i0 = np.floor(u).astype(np.intp)
        own = np.floor(centre / cell_px).astype(np.intp)
        return cls(
            lo=np.clip(i0, 0, n_cells - 1),
            hi=np.clip(i0 + 1, 0, n_cells - 1),
            frac=(u - i0).astype(np.float32),
            own=np.clip(own, 0, n_cells - 1),
            inside=(own >= 0) & (own < n_cells),
        )

    def shifted(self, first_cell: int) -> _Axis:
        """The same axis with cell indices counted from ``first_cell``."""
        return _Axis(
            self.lo - first_cell, self.hi - first_cell, self.frac, self.own - first_cell,
            self.inside,
        )  # fmt: skip

    def matrix(self, n_cells: int) -> npt.NDArray[np.float32]:
        """Interpolation as a ``(pixels, n_cells)`` matrix, two weights per row.

        Two matrix products interpolate a block far faster than gathering each pixel's cells.
        """
        out = np.zeros((len(self.lo), n_cells), np.float32)
        rows = np.arange(len(self.lo))
        np.add.at(out, (rows, self.lo), 1 - self.frac)
        np.add.at(out, (rows, self.hi), self.frac)
        return out


class CellGrid:
    """Weighted sums of window CAMs and probabilities on the scene's lattice.

    Args:
        n_classes: number of classes.
        row_offsets: window top rows of the grid (scene pixels; may be negative).
        col_offsets: window left columns of the grid.
        window_px: window edge in pixels.
        cells_rc: CAM cells per window (rows, cols), e.g. (2, 2).
        stride_px: the grid's stride.

    Raises:
        ConfigError: see :func:`lattice_px`; also for cells that are not square.
    """

    def __init__(
        self,
        n_classes: int,
        row_offsets: Sequence[int],
        col_offsets: Sequence[int],
        window_px: int,
        cells_rc: tuple[int, int],
        stride_px: int,
    ) -> None:
        cells = cells_rc[0]
        if cells_rc[0] != cells_rc[1]:
            raise ConfigError(
                f"the model's {cells_rc[0]} x {cells_rc[1]} CAM cells are not square; geocam "
                "stitches square windows of square cells"
            )
        self.lattice_px = lattice_px(window_px, cells, stride_px)
        self.samples = window_px // self.lattice_px  # lattice cells per window and axis
        self._upsample = upsample_matrix(self.samples, cells)
        self._weight = np.outer(taper(self.samples), taper(self.samples))
        self.origin_rc = (min(row_offsets), min(col_offsets))
        span_r = max(row_offsets) + window_px - self.origin_rc[0]
        span_c = max(col_offsets) + window_px - self.origin_rc[1]
        shape = (-(-span_r // self.lattice_px) + 1, -(-span_c // self.lattice_px) + 1)
        self.cam_sum = np.zeros((n_classes, *shape), dtype=np.float32)
        self.prob_sum = np.zeros((n_classes, *shape), dtype=np.float32)
        self.weight_sum = np.zeros(shape, dtype=np.float32)
        self.hits = np.zeros(shape, dtype=np.uint16)
        self._means: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None = None

    def _index(self, origin_px: int, axis: int) -> int:
        """Lattice cell of a window's first pixel.

        Off-lattice windows (the ``inward`` grid's last row and column, shifted back from the
        lattice to end at the scene's edge) snap forward, so the scene's edge stays covered.
        """
        return -(-(origin_px - self.origin_rc[axis]) // self.lattice_px)

    def add(
        self,
        cams: npt.NDArray[np.float32],
        probs: npt.NDArray[np.float32],
        origins_rc: Sequence[tuple[int, int]],
    ) -> None:
        """Add windows.

        Args:
            cams: ``(windows, classes, cells, cells)`` raw CAMs.
            probs: ``(windows, classes)`` probabilities.
            origins_rc: (row, col) of each window's top-left pixel in the scene grid.
        """
        self._means = None
        u, w, n = self._upsample, self._weight, self.samples
        weighted = np.einsum("rh,nkhw,cw->nkrc", u, cams, u, optimize=True) * w
        for cam, prob, (r, c) in zip(weighted, probs, origins_rc, strict=True):
            i, j = self._index(r, 0), self._index(c, 1)
            self.cam_sum[:, i : i + n, j : j + n] += cam
            self.prob_sum[:, i : i + n, j : j + n] += prob[:, None, None] * w
            self.weight_sum[i : i + n, j : j + n] += w
            self.hits[i : i + n, j : j + n] += 1

    def means(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Smoothed per-cell means of CAM and probability, ``(classes, rows, cols)`` each.

        Computed when first asked for (the lattice is complete by then) and kept until a window
        is added; 0 where no window is.
        """
        if self._means is None:
            present = self.hits > 0
            weight = np.where(present, self.weight_sum, 1.0).astype(np.float32)
            self._means = (
                smooth_cells(self.cam_sum, weight, present),
                smooth_cells(self.prob_sum, weight, present),
            )
        return self._means

    def scene_max(self) -> npt.NDArray[np.float32]:
        """Per-class maximum of the ReLU'd stitched CAM over the covered cells, ``(classes,)``.

        Interpolated pixels are convex combinations of cells, so no pixel exceeds it.
        """
        cam, _ = self.means()
        out: npt.NDArray[np.float32] = np.max(
            np.where(self.hits > 0, cam, 0.0), axis=(1, 2), initial=0.0
        ).astype(np.float32)
        return out

    def render(
        self,
        origin_rc: tuple[int, int],
        shape_rc: tuple[int, int],
        prob_floor: npt.NDArray[np.float32] | None = None,
    ) -> Rendered:
        """Per-pixel CAM and probabilities of a window of the scene grid (may overhang it).

        Args:
            origin_rc: (row, col) of the window's top-left pixel in the scene grid.
            shape_rc: (rows, cols) of the window.
            prob_floor: ``(classes,)`` raw CAM values; if given, probabilities are rendered
                only for the classes whose CAM reaches theirs somewhere in the window (a pixel
                is a convex combination of lattice cells, so no pixel of another class does);
                the other classes' probabilities are NaN.
        """
        rows = _Axis.of(origin_rc[0], shape_rc[0], self.origin_rc[0], self.lattice_px,
                        self.hits.shape[0])  # fmt: skip
        cols = _Axis.of(origin_rc[1], shape_rc[1], self.origin_rc[1], self.lattice_px,
                        self.hits.shape[1])  # fmt: skip
        # Only the lattice cells this window reads.
        r0, r1 = int(rows.lo.min()), int(rows.hi.max()) + 1
        c0, c1 = int(cols.lo.min()), int(cols.hi.max()) + 1
        rows, cols = rows.shifted(r0), cols.shifted(c0)
        along_rows, along_cols = rows.matrix(r1 - r0), cols.matrix(c1 - c0).T
        hits = self.hits[r0:r1, c0:c1]
        present = (hits > 0).astype(np.float32)  # covered lattice cells take part
        present_px = along_rows @ present @ along_cols
        covered = (hits[rows.own][:, cols.own] > 0) & rows.inside[:, None] & cols.inside[None, :]
        denom = np.where(covered, present_px, 1.0)
        uncovered = None if covered.all() else ~covered

        def interpolate(cell_mean: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
            value = along_rows @ cell_mean @ along_cols
            value /= denom  # in place: saves a block-sized temporary per class
            if uncovered is not None:
                value[:, uncovered] = np.nan
            return value.astype(np.float32, copy=False)

        cam_mean, prob_mean = self.means()
        cam_cells = cam_mean[:, r0:r1, c0:c1]
        prob_cells = prob_mean[:, r0:r1, c0:c1]
        cam = interpolate(cam_cells)
        if prob_floor is None:
            return Rendered(cam=cam, prob=interpolate(prob_cells), covered=covered)
        reach = np.where(hits > 0, cam_cells, -np.inf).max(axis=(1, 2), initial=-np.inf)
        needed = np.flatnonzero(reach >= prob_floor)
        prob = np.full_like(cam, np.nan)
        if needed.size:
            prob[needed] = interpolate(prob_cells[needed])
        return Rendered(cam=cam, prob=prob, covered=covered)


def class_map(
    cam: npt.NDArray[np.float32],
    bias: npt.NDArray[np.float32],
    covered: npt.NDArray[np.bool_],
) -> npt.NDArray[np.uint8]:
    """Winning class per pixel from the local logits ``CAM_c + b_c`` (their window mean is the logit).

    Args:
        cam: ``(classes, rows, cols)`` raw stitched CAM.
        bias: ``(classes,)`` the linear head's bias.
        covered: ``(rows, cols)`` pixels that have a value.

    Returns:
        ``(rows, cols)`` uint8 class index, :data:`NO_CLASS` where not covered.
    """
    # A running maximum over classes (contiguous passes; argmax over axis 0 strides).
    best = cam[0] + bias[0]
    out = np.zeros(best.shape, dtype=np.uint8)
    for c in range(1, len(bias)):
        local = cam[c] + bias[c]
        better = local > best
        out[better] = c
        np.maximum(best, local, out=best)
    out[~covered] = NO_CLASS
    return out


def normalise(
    cam: npt.NDArray[np.float32],
    scene_max: npt.NDArray[np.float32],
    out: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]:
    """Scene-normalised heat: ``relu(cam) / scene_max`` per class, in [0, 1]; NaN stays NaN.

    Args:
        cam: ``(classes, rows, cols)`` raw stitched CAM.
        scene_max: ``(classes,)`` per-class maximum of the ReLU'd CAM over the whole scene.
        out: where to write the result (``cam`` itself to save its memory); a new array if None.
    """
    denom = np.where(scene_max > 0, scene_max, 1.0).astype(np.float32)[:, None, None]
    heat: npt.NDArray[np.float32] = np.maximum(cam, np.float32(0.0), out=out)
    heat /= denom
    return heat
