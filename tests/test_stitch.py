from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from geocam.stitch import (
    NO_CLASS,
    BlockAccumulator,
    class_map,
    normalise,
    running_max,
    stitch_tiles,
    upsample_cams,
    upsample_matrix,
    window_weight,
)
from geocam.tiling import grid_offsets


@pytest.mark.parametrize(
    ("height", "width", "size", "stride"),
    [(96, 128, 64, 32), (100, 130, 64, 32), (97, 131, 64, 64), (64, 64, 64, 32)],
)
def test_constant_cam_stitches_to_constant(height: int, width: int, size: int, stride: int) -> None:
    rows, cols = grid_offsets(height, width, size, stride)
    origins = [(r, c) for r in rows for c in cols]
    cams = np.full((len(origins), 3, 2, 2), 1.5, dtype=np.float32)
    probs = np.tile(np.array([0.2, 0.3, 0.5], dtype=np.float32), (len(origins), 1))
    res = stitch_tiles(cams, probs, origins, (height, width), size)
    assert res.hits.dtype == np.uint16 and res.hits.min() >= 1
    assert res.covered.all()
    np.testing.assert_allclose(res.cam, 1.5, rtol=1e-5)
    np.testing.assert_allclose(res.prob[2], 0.5, rtol=1e-5)


def test_uncovered_and_invalid_pixels_are_nan() -> None:
    acc = BlockAccumulator(2, (0, 0), (10, 10))
    acc.add(np.ones((2, 4, 4), np.float32), np.array([0.4, 0.6], np.float32), (2, 3))
    valid = np.ones((10, 10), bool)
    valid[2, 3] = False
    res = acc.finalise(valid)
    assert np.isnan(res.cam[:, 0, 0]).all() and np.isnan(res.cam[:, 2, 3]).all()
    assert res.covered.sum() == 15
    np.testing.assert_allclose(res.cam[:, 3:6, 4:7], 1.0)


def test_window_outside_block_is_ignored_and_clipped() -> None:
    acc = BlockAccumulator(1, (10, 10), (8, 8))
    acc.add(np.full((1, 4, 4), 2.0, np.float32), np.ones(1, np.float32), (0, 0))  # outside
    acc.add(np.full((1, 4, 4), 2.0, np.float32), np.ones(1, np.float32), (8, 16))  # partly inside
    assert acc.hits.sum() == 2 * 2
    assert acc.hits[:2, 6:].all()


@pytest.mark.parametrize(("out_px", "cells"), [(64, 2), (32, 1), (96, 3), (64, 4)])
def test_upsample_matches_torch_bilinear(out_px: int, cells: int) -> None:
    rng = np.random.default_rng(0)
    cams = rng.normal(size=(2, 5, cells, cells)).astype(np.float32)
    ours = upsample_cams(cams, out_px)
    ref = F.interpolate(
        torch.from_numpy(cams), size=(out_px, out_px), mode="bilinear", align_corners=False
    )
    np.testing.assert_allclose(ours, ref.numpy(), atol=1e-5)
    np.testing.assert_allclose(upsample_matrix(out_px, cells).sum(axis=1), 1.0, atol=1e-6)


def test_window_weight_half_overlap_is_flat() -> None:
    w = window_weight(64)
    assert w.min() > 0 and w.max() <= 1
    total = np.zeros((128, 128), np.float32)
    for r in range(0, 96, 32):
        for c in range(0, 96, 32):
            total[r : r + 64, c : c + 64] += w
    inner = total[32:96, 32:96]
    np.testing.assert_allclose(inner, inner.mean(), rtol=1e-4)


def test_class_map_uses_local_logits() -> None:
    cam = np.zeros((3, 2, 2), np.float32)
    cam[1, 0, 0] = 5.0
    bias = np.array([0.0, 0.0, 1.0], np.float32)
    covered = np.array([[True, True], [True, False]])
    out = class_map(cam, bias, covered)
    assert out.tolist() == [[1, 2], [2, NO_CLASS]]


def test_normalise_once_per_scene() -> None:
    a = np.array([[[1.0, -2.0]], [[0.0, 0.0]]], np.float32)
    b = np.array([[[4.0, np.nan]], [[0.0, 0.0]]], np.float32)
    m = running_max(running_max(np.zeros(2, np.float32), a), b)
    assert m.tolist() == [4.0, 0.0]
    n = normalise(a, m)
    assert n[0].tolist() == [[0.25, 0.0]] and n[1].tolist() == [[0.0, 0.0]]
    assert np.isnan(normalise(b, m)[0, 0, 1])
