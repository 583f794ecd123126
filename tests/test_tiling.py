from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from conftest import write_raster

from geocam.errors import TilingError
from geocam.tiling import grid_offsets, grid_tiles, iter_blocks, window_count

CASES = [
    (96, 128, 64, 32),  # multiple of the stride
    (100, 130, 64, 32),  # not a multiple: edge windows overhang / shift
    (97, 131, 64, 64),  # stride == size
    (64, 64, 64, 32),  # a single tile
    (200, 150, 64, 48),
    (77, 91, 16, 5),
    (768, 1536, 64, 32),  # Havel
]


def hits(height: int, width: int, tiles: list) -> np.ndarray:
    out = np.zeros((height, width), dtype=np.uint16)
    for t in tiles:
        r0, c0, s = t.row_off, t.col_off, t.size_px
        out[max(r0, 0) : min(r0 + s, height), max(c0, 0) : min(c0 + s, width)] += 1
    return out


@pytest.mark.parametrize("grid", ["torchgeo", "inward"])
@pytest.mark.parametrize(("height", "width", "size", "stride"), CASES)
def test_tiles_cover_grid(grid: str, height: int, width: int, size: int, stride: int) -> None:
    transform = Affine(10, 0, 1000, 0, -10, 5000)
    tiles = grid_tiles(height, width, size, stride, transform, grid=grid)  # type: ignore[arg-type]
    assert len(tiles) == window_count(height, size, stride) * window_count(width, size, stride)
    assert hits(height, width, tiles).min() >= 1
    for t in tiles:
        assert t.window.width == t.window.height == size
        # each tile carries its georeferencing
        assert t.transform.c == transform.c + t.col_off * 10
        assert t.transform.f == transform.f - t.row_off * 10
        if grid == "inward":
            assert 0 <= t.row_off <= height - size and 0 <= t.col_off <= width - size
        else:  # overhang is less than one stride in total
            assert -stride < t.row_off and t.row_off + size < height + stride
            assert -stride < t.col_off and t.col_off + size < width + stride


def torchgeo_offsets(path: Path, size: int, stride: int) -> set[tuple[int, int]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchgeo.datasets import RasterDataset
        from torchgeo.samplers import GriddedPatchSampler

        ds = RasterDataset(paths=str(path))
        sampler = GriddedPatchSampler(ds, size=size, stride=stride)
        left, _, _, top = ds.index.geometry.union_all().bounds
        resx, resy = ds.res
        out = set()
        for xs, ys in sampler:
            out.add((round((top - ys.stop) / resy), round((xs.start - left) / resx)))
    return out


@pytest.mark.parametrize(("height", "width", "size", "stride"), CASES[:-1])
def test_matches_torchgeo_gridded_patch_sampler(
    tmp_path: Path, height: int, width: int, size: int, stride: int
) -> None:
    path = write_raster(
        tmp_path / "g.tif", np.ones((1, height, width), np.uint8), descriptions=None
    )
    rows, cols = grid_offsets(height, width, size, stride, "torchgeo")
    ours = {(r, c) for r in rows for c in cols}
    assert ours == torchgeo_offsets(path, size, stride)


@pytest.mark.parametrize(
    ("height", "width", "size", "stride"), [(63, 100, 64, 32), (100, 10, 64, 32), (100, 100, 0, 1)]
)
def test_bad_grid_raises(height: int, width: int, size: int, stride: int) -> None:
    with pytest.raises(TilingError, match="size_px|window"):
        grid_offsets(height, width, size, stride)


def test_stride_larger_than_size_raises() -> None:
    with pytest.raises(TilingError, match="`stride_px`=65 exceeds `size_px`=64"):
        grid_offsets(100, 100, 64, 65)


@pytest.mark.parametrize(
    ("height", "width", "block"), [(100, 130, 64), (768, 1536, 512), (96, 128, 1024)]
)
def test_blocks_own_each_tile_once(height: int, width: int, block: int) -> None:
    rows, cols = grid_offsets(height, width, 64, 32)
    blocks = list(iter_blocks(height, width, block, rows, cols, 64, Affine.identity()))
    owned = [(t.row_off, t.col_off) for b in blocks for t in b.tiles]
    assert sorted(owned) == sorted((r, c) for r in rows for c in cols)
    area = np.zeros((height, width), dtype=int)
    for b in blocks:
        w = b.window
        area[
            int(w.row_off) : int(w.row_off + w.height), int(w.col_off) : int(w.col_off + w.width)
        ] += 1
        for t in b.tiles:  # the owner holds the tile's (clamped) origin
            assert w.row_off <= max(t.row_off, 0) < w.row_off + w.height
            assert w.col_off <= max(t.col_off, 0) < w.col_off + w.width
    assert (area == 1).all()
