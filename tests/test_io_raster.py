"""Work rasters and COGs: overview levels written block by block match what GDAL would make."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from geocam.io.pyramid import PyramidWriter, average_2x, overview_factors
from geocam.io.raster import write_cog

UTM = CRS.from_epsg(32633)
T = Affine(10, 0, 330000, 0, -10, 5822040)


@pytest.mark.parametrize("shape_rc", [(384, 512), (513, 200), (768, 1536), (1100, 2100)])
def test_overview_factors_are_those_of_gdals_cog_driver(tmp_path: Path, shape_rc) -> None:
    src = tmp_path / "src.tif"
    profile = {"driver": "GTiff", "count": 1, "dtype": "uint8", "crs": UTM, "transform": T}
    with rasterio.open(src, "w", height=shape_rc[0], width=shape_rc[1], **profile) as dst:
        dst.write(np.zeros((1, *shape_rc), np.uint8))
    write_cog(src, tmp_path / "cog.tif", "class-cog")
    with rasterio.open(tmp_path / "cog.tif") as cog:
        assert overview_factors(shape_rc) == cog.overviews(1)


def test_average_2x_ignores_nan_and_pads_odd_edges() -> None:
    data = np.array([[[1, 3, 5], [np.nan, 2, 7], [4, np.nan, np.nan]]], np.float32)
    out = average_2x(data)
    np.testing.assert_allclose(out, [[[2.0, 6.0], [4.0, np.nan]]])
    assert average_2x(np.ones((2, 4, 4), np.float32)).tolist() == np.ones((2, 2, 2)).tolist()


def test_pyramid_levels_become_the_cogs_overviews(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows, cols, block = 1100, 1300, 256
    data = rng.random((2, rows, cols)).astype(np.float32)
    data[:, :40, :70] = np.nan  # nodata corner
    names = ["a", "b"]
    with PyramidWriter(
        tmp_path / "heat.tif", 2, UTM, T, (rows, cols), block, names, tags={"K": "v"}
    ) as writer:
        writer.update_band_tags(1, CLASS="a")
        for r in range(0, rows, block):
            for c in range(0, cols, block):
                h, w = min(block, rows - r), min(block, cols - c)
                writer.write(Window(c, r, w, h), data[:, r : r + h, c : c + w])
    assert writer.factors == [2, 4]
    write_cog(writer.vrt(), tmp_path / "cam.tif", "heat-cog")
    with rasterio.open(tmp_path / "cam.tif") as cog:
        assert cog.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        # Bands apart, so that a viewer showing one class decompresses only its tiles.
        assert cog.tags(ns="IMAGE_STRUCTURE")["INTERLEAVE"] in ("TILE", "BAND")
        assert cog.overviews(1) == [2, 4] and cog.descriptions == ("a", "b")
        assert cog.tags()["K"] == "v" and cog.tags(1)["CLASS"] == "a"
        assert cog.crs == UTM and cog.transform == T and np.isnan(cog.nodata)
        np.testing.assert_array_equal(cog.read(), data)
    expected = data
    for level in range(2):
        expected = average_2x(expected)
        with rasterio.open(tmp_path / "cam.tif", overview_level=level) as ovr:
            np.testing.assert_allclose(ovr.read(), expected, rtol=1e-6)


def test_pyramid_without_aligned_blocks_leaves_overviews_to_gdal(tmp_path: Path) -> None:
    writer = PyramidWriter(tmp_path / "heat.tif", 1, UTM, T, (1100, 1300), block_px=250)
    assert writer.factors == [] and writer.vrt() == tmp_path / "heat.tif"


def test_the_cog_copies_the_written_levels(tmp_path: Path) -> None:
    shape_rc = (600, 700)
    with PyramidWriter(tmp_path / "heat.tif", 1, UTM, T, shape_rc, 512) as writer:
        for r, c in ((0, 0), (0, 512), (512, 0), (512, 512)):
            h, w = min(512, 600 - r), min(512, 700 - c)
            writer.write(Window(c, r, w, h), np.ones((1, h, w), np.float32))
    with rasterio.open(writer.levels[0].path, "r+") as level:  # not what GDAL would compute
        level.write(np.full((1, level.height, level.width), 7.0, np.float32))
    write_cog(writer.vrt(), tmp_path / "cam.tif", "heat-cog")
    with rasterio.open(tmp_path / "cam.tif", overview_level=0) as ovr:
        assert ovr.shape == (300, 350) and (ovr.read() == 7.0).all()
