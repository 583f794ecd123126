from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from geocam.errors import ConfigError
from geocam.stitch import (
    NO_CLASS,
    SMOOTHING,
    CellGrid,
    class_map,
    normalise,
    smooth_cells,
    taper,
    upsample_matrix,
)
from geocam.tiling import grid_offsets


def _grid(
    shape_rc: tuple[int, int],
    size: int,
    stride: int,
    cams: float | None = None,
    grid: str = "torchgeo",
) -> tuple[CellGrid, list[tuple[int, int]]]:
    rows, cols = grid_offsets(shape_rc[0], shape_rc[1], size, stride, grid)
    origins = [(r, c) for r in rows for c in cols]
    cells = CellGrid(3, rows, cols, size, (size // 32, size // 32), stride)
    if cams is not None:
        n = len(origins)
        cells.add(
            np.full((n, 3, size // 32, size // 32), cams, np.float32),
            np.tile(np.array([0.2, 0.3, 0.5], np.float32), (n, 1)),
            origins,
        )
    return cells, origins


@pytest.mark.parametrize(
    ("height", "width", "size", "stride", "grid"),
    [
        (96, 128, 64, 32, "torchgeo"),
        (100, 130, 64, 32, "torchgeo"),
        (97, 131, 64, 64, "torchgeo"),
        (64, 64, 64, 32, "torchgeo"),
        (100, 140, 64, 16, "torchgeo"),
        (100, 140, 64, 48, "torchgeo"),
        (100, 139, 64, 32, "inward"),
    ],
)
def test_constant_cam_stitches_to_constant(
    height: int, width: int, size: int, stride: int, grid: str
) -> None:
    cells, _ = _grid((height, width), size, stride, cams=1.5, grid=grid)
    px = cells.render((0, 0), (height, width))
    assert px.covered.all()
    np.testing.assert_allclose(px.cam, 1.5, rtol=1e-5)
    np.testing.assert_allclose(px.prob[2], 0.5, rtol=1e-5)
    np.testing.assert_allclose(cells.scene_max(), 1.5, rtol=1e-5)


def _smoothed_reference(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """The binomial over present cells, by explicit neighbour sums (normalised convolution)."""
    taps = np.array(SMOOTHING) / sum(SMOOTHING)
    half = len(taps) // 2
    out = np.zeros_like(values)
    rows, cols = present.shape
    for r, c in zip(*np.nonzero(present), strict=True):
        num, den = np.zeros(values.shape[0]), 0.0
        for dr in range(-half, half + 1):
            for dc in range(-half, half + 1):
                rr, cc = r + dr, c + dc
                if 0 <= rr < rows and 0 <= cc < cols and present[rr, cc]:
                    weight = taps[dr + half] * taps[dc + half]
                    num += weight * values[:, rr, cc]
                    den += weight
        out[:, r, c] = num / den
    return out


def test_one_window_per_place_renders_like_torch_bilinear_of_the_smoothed_lattice() -> None:
    # Non-overlapping 64 px windows: each 16 px lattice cell holds one window's bilinear sample;
    # the lattice is smoothed, and pixels interpolate between its cells like torch's bilinear.
    rng = np.random.default_rng(0)
    cells, origins = _grid((128, 192), 64, 64)
    cams = rng.normal(size=(len(origins), 3, 2, 2)).astype(np.float32)
    cells.add(cams, np.full((len(origins), 3), 1 / 3, np.float32), origins)
    lattice = cells.cam_sum[:, :8, :12] / cells.weight_sum[:8, :12]  # 128 x 192 px / 16 px
    smoothed = _smoothed_reference(lattice, np.ones((8, 12), bool)).astype(np.float32)
    px = cells.render((0, 0), (128, 192))
    ref = F.interpolate(torch.from_numpy(smoothed[None]), scale_factor=16, mode="bilinear")
    np.testing.assert_allclose(px.cam, ref[0, :, :128, :192].numpy(), atol=1e-5)


def test_position_bias_of_the_window_leaves_no_grid() -> None:
    # Every window's last cell holds three times its others' CAM (the network's position bias):
    # taper and bias alternate from one lattice cell to the next; the smoothing flattens that.
    cells, origins = _grid((320, 320), 64, 32)
    cams = np.ones((len(origins), 3, 2, 2), np.float32)
    cams[:, :, 1, 1] = 3.0
    cells.add(cams, np.full((len(origins), 3), 1 / 3, np.float32), origins)
    inner = cells.render((0, 0), (320, 320)).cam[:, 96:224, 96:224]  # beyond the edges' reach
    np.testing.assert_allclose(inner, inner.mean(), rtol=1e-5)
    lattice = cells.cam_sum / np.maximum(cells.weight_sum, 1e-9)
    assert np.ptp(lattice[0, 6:14, 6:14]) > 0.3  # the unsmoothed lattice alternates


def test_smooth_cells_is_a_normalised_binomial() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(size=(2, 6, 9)).astype(np.float32)
    present = rng.random((6, 9)) > 0.3
    weight = rng.uniform(0.5, 2.0, size=(6, 9)).astype(np.float32)
    out = smooth_cells(values * weight, weight, present)
    np.testing.assert_allclose(out, _smoothed_reference(values, present), rtol=1e-5, atol=1e-5)
    assert (out[:, ~present] == 0).all()
    constant = smooth_cells(
        np.full((1, 6, 9), 2.5, np.float32), np.ones((6, 9), np.float32), present
    )
    np.testing.assert_allclose(constant[:, present], 2.5, rtol=1e-6)


def test_render_does_not_depend_on_the_block() -> None:
    rng = np.random.default_rng(1)
    cells, origins = _grid((150, 200), 64, 32)
    cells.add(
        rng.normal(size=(len(origins), 3, 2, 2)).astype(np.float32),
        rng.random((len(origins), 3)).astype(np.float32),
        origins,
    )
    whole = cells.render((-5, -7), (160, 215))
    parts = [cells.render((-5, c), (160, w)) for c, w in ((-7, 50), (43, 77), (120, 88))]
    cams = np.concatenate([p.cam for p in parts], axis=2)
    np.testing.assert_allclose(cams, whole.cam, rtol=1e-6, atol=1e-6)  # float32 BLAS sums
    np.testing.assert_array_equal(np.concatenate([p.covered for p in parts], axis=1), whole.covered)


def test_probabilities_only_for_classes_that_reach_the_floor() -> None:
    rng = np.random.default_rng(2)
    cells, origins = _grid((128, 192), 64, 32)
    cams = rng.normal(size=(len(origins), 3, 2, 2)).astype(np.float32)
    cams[:, 1] -= 10.0  # class 1 stays far below any floor
    cells.add(cams, rng.random((len(origins), 3)).astype(np.float32), origins)
    full = cells.render((10, 20), (100, 150))
    above_every_cell = cells.scene_max()[2] + 0.01
    floor = np.array([-5.0, -5.0, above_every_cell], np.float32)
    part = cells.render((10, 20), (100, 150), prob_floor=floor)
    np.testing.assert_array_equal(part.cam, full.cam)
    np.testing.assert_array_equal(part.prob[0], full.prob[0])  # reaches its floor
    assert np.nanmax(full.cam[1]) < floor[1] and np.isnan(part.prob[1]).all()
    assert np.nanmax(full.cam[2]) < floor[2] and np.isnan(part.prob[2]).all()


def test_uncovered_cells_are_nan_and_do_not_bleed() -> None:
    cells, origins = _grid((64, 192), 64, 64)
    kept = [o for o in origins if o[1] != 64]  # the middle window is missing
    cells.add(np.full((len(kept), 3, 2, 2), 2.0, np.float32), np.ones((len(kept), 3)), kept)
    px = cells.render((0, 0), (64, 192))
    assert not px.covered[:, 64:128].any() and px.covered[:, :64].all()
    assert np.isnan(px.cam[:, :, 64:128]).all()
    np.testing.assert_allclose(px.cam[:, :, :64], 2.0, rtol=1e-6)  # no zeros from the gap
    assert cells.render((200, 300), (4, 4)).covered.sum() == 0  # far outside the lattice


def test_grid_errors_name_the_fix() -> None:
    with pytest.raises(ConfigError, match="window_px"):
        CellGrid(3, [0], [0], 70, (2, 2), 32)
    with pytest.raises(ConfigError, match="stride"):
        CellGrid(3, [0], [0], 64, (2, 2), 20)


def test_taper_and_upsample_matrix() -> None:
    t = taper(4)
    assert t.min() > 0 and t.max() <= 1
    np.testing.assert_allclose(t[:2] + t[2:], 1.0, rtol=1e-6)  # half overlap sums to 1
    rng = np.random.default_rng(0)
    cams = rng.normal(size=(2, 5, 2, 2)).astype(np.float32)
    m = upsample_matrix(4, 2)
    ours = np.einsum("rh,nkhw,cw->nkrc", m, cams, m)
    ref = F.interpolate(torch.from_numpy(cams), size=(4, 4), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(ours, ref.numpy(), atol=1e-6)


def test_class_map_uses_local_logits() -> None:
    cam = np.zeros((3, 2, 2), np.float32)
    cam[1, 0, 0] = 5.0
    bias = np.array([0.0, 0.0, 1.0], np.float32)
    covered = np.array([[True, True], [True, False]])
    out = class_map(cam, bias, covered)
    assert out.tolist() == [[1, 2], [2, NO_CLASS]]


def test_normalise_once_per_scene() -> None:
    cells, origins = _grid((64, 128), 64, 64)
    cams = np.zeros((2, 3, 2, 2), np.float32)
    cams[0, 0] = 1.0
    cams[1, 0] = 4.0
    cams[1, 1] = -2.0
    cells.add(cams, np.ones((2, 3), np.float32), origins)
    m = cells.scene_max()
    assert m.tolist() == [4.0, 0.0, 0.0]
    a = np.array([[[1.0, -2.0]], [[0.0, 0.0]], [[np.nan, 1.0]]], np.float32)
    n = normalise(a, m)
    assert n[0].tolist() == [[0.25, 0.0]] and n[1].tolist() == [[0.0, 0.0]]
    assert np.isnan(n[2, 0, 0])
    in_place = normalise(a, m, out=a)
    assert in_place is a and np.array_equal(in_place, n, equal_nan=True)
