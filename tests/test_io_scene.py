from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from conftest import HAVEL, HAVEL_JP2, synthetic_s2, tiny_card, write_raster
from rasterio.windows import Window

from geocam.config import BandSpec
from geocam.errors import BandError, BandOrderWarning, ConfigError, NodataWarning, SceneError
from geocam.io.bands import match_bands
from geocam.io.reader import SceneReader
from geocam.io.scene import open_scene
from geocam.io.sentinel2 import detect_dn_offset, group_inputs
from geocam.model import RGB_BANDS
from geocam.radiometry import Radiometry
from geocam.render import render

needs_havel = pytest.mark.skipif(not HAVEL_JP2.exists(), reason="../shared Havel scene not present")


def test_open_scene(s2_scene: Path) -> None:
    scene = open_scene([s2_scene])
    assert scene.shape_rc == (96, 128)
    assert scene.crs.to_epsg() == 32633
    assert scene.res_xy == (10.0, 10.0)
    assert scene.band_names[12] == "B8A"
    assert scene.nodata == 0.0 and "Sentinel-2" in scene.nodata_source
    assert scene.dn_offset == 0.0


def test_match_by_name_reorders(s2_scene: Path) -> None:
    match = match_bands(open_scene([s2_scene]), RGB_BANDS, None)
    assert match.indexes == (3, 2, 1) and match.how == "name"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("B04=4,B03=3,B02=2", (3, 2, 1)), ("4,3,2", (3, 2, 1)), ("b4=1,B3=1,B2=1", (0, 0, 0))],
)
def test_match_explicit(s2_scene: Path, text: str, expected: tuple[int, ...]) -> None:
    assert match_bands(open_scene([s2_scene]), RGB_BANDS, BandSpec.parse(text)).indexes == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("B04=4,B03=3", "lacks model band\\(s\\) B02"),
        ("4,3", "gives 2 index"),
        ("4,3,99", "index 99 is out of range"),
    ],
)
def test_match_explicit_errors(s2_scene: Path, text: str, message: str) -> None:
    with pytest.raises(BandError, match=message):
        match_bands(open_scene([s2_scene]), RGB_BANDS, BandSpec.parse(text))


@pytest.mark.parametrize("text", ["", "B04=x", "B04=1,2", "0,1,2", "B99=1", "B04=1,B04=2"])
def test_band_spec_parse_errors(text: str) -> None:
    with pytest.raises(ConfigError, match="`bands`="):
        BandSpec.parse(text)


def test_missing_band_is_clear(tmp_path: Path) -> None:
    path = write_raster(
        tmp_path / "s.tif", synthetic_s2((96, 128))[:3], descriptions=("B01", "B02", "B03")
    )
    with pytest.raises(BandError, match="lacks band\\(s\\) B04.*--bands"):
        match_bands(open_scene([path]), RGB_BANDS, None)


def test_unnamed_bands(tmp_path: Path) -> None:
    three = write_raster(tmp_path / "3.tif", synthetic_s2((96, 128))[:3], descriptions=None)
    with pytest.warns(NodataWarning):
        scene = open_scene([three])
    with pytest.warns(BandOrderWarning):
        assert match_bands(scene, RGB_BANDS, None).indexes == (0, 1, 2)
    four = write_raster(tmp_path / "4.tif", synthetic_s2((96, 128))[:4], descriptions=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scene4 = open_scene([four])
    with pytest.raises(BandError, match="4 unnamed band"):
        match_bands(scene4, RGB_BANDS, None)


def test_not_a_raster(tmp_path: Path) -> None:
    path = tmp_path / "x.tif"
    path.write_text("hello")
    with pytest.raises(SceneError, match="not a raster"):
        open_scene([path])


def test_no_crs(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "n.tif", synthetic_s2((96, 128)), crs=None)
    with pytest.raises(SceneError, match="no CRS"):
        open_scene([path])


def test_rotated_transform(tmp_path: Path) -> None:
    path = write_raster(
        tmp_path / "r.tif",
        synthetic_s2((96, 128)),
        transform=Affine(10, 2, 330000, 2, -10, 5822040),
    )
    with pytest.raises(SceneError, match="rotated or sheared"):
        open_scene([path])


def test_boundless_read_marks_outside_invalid(s2_scene: Path) -> None:
    scene = open_scene([s2_scene])
    with SceneReader(scene, (3, 2, 1)) as reader:
        dn, valid = reader.read(Window(-5, -3, 20, 10))
    assert dn.shape == (3, 10, 20) and valid.shape == (10, 20)
    assert not valid[:3].any() and not valid[:, :5].any() and valid[3:, 5:].all()
    with rasterio.open(s2_scene) as src:
        np.testing.assert_array_equal(dn[0, 3:, 5:], src.read(4, window=Window(0, 0, 15, 7)))


def test_nodata_pixels_invalid(tmp_path: Path) -> None:
    data = synthetic_s2((96, 128))
    data[:, :10, :10] = 0
    scene = open_scene([write_raster(tmp_path / "nd.tif", data, nodata=0)])
    assert scene.nodata_source == "scene nodata value"
    with SceneReader(scene, (3, 2, 1)) as reader:
        _, valid = reader.read(Window(0, 0, 20, 20))
    assert not valid[:10, :10].any() and valid[10:, 10:].all()


def _radiometry(gain: float = 1.0, add: float = 0.0) -> Radiometry:
    return Radiometry("reflectance", "L1C", "test", (gain,) * 3, (add,) * 3, "test", {})


def test_render_follows_card_and_radiometry() -> None:
    card = tiny_card()
    dn = np.full((3, 2, 2), 2750.0, np.float32)
    valid = np.array([[True, True], [True, False]])
    out = render(dn.copy(), valid, card, _radiometry(), (0, 1, 2))
    np.testing.assert_allclose(
        out[:, 0, 0], (255.0 - np.array(card.mean)) / np.array(card.std), rtol=1e-5
    )
    assert (out[:, 1, 1] == 0).all()
    x1000 = render(dn / 10, valid, card, _radiometry(gain=10.0), (0, 1, 2))
    np.testing.assert_allclose(x1000, out, rtol=1e-5)
    offset = render(dn + 1000, valid, card, _radiometry(add=-1000.0), (0, 1, 2))
    np.testing.assert_allclose(offset, out, rtol=1e-5)


def test_dn_offset_detection(tmp_path: Path) -> None:
    assert detect_dn_offset([tmp_path / "a.tif"], {})[0] == 0.0
    product = tmp_path / "S2B_MSIL2A_20230101T000000_N0509_R000_T33UUU_20230101T000000.SAFE"
    img = product / "GRANULE/L2A_T33UUU/IMG_DATA/R10m"
    img.mkdir(parents=True)
    band = img / "T33UUU_20230101T000000_B04_10m.jp2"
    assert detect_dn_offset([band], {}) == (-1000.0, "processing baseline N0509")
    (product / "MTD_MSIL2A.xml").write_text(
        "<root><PROCESSING_BASELINE>05.09</PROCESSING_BASELINE></root>"
    )
    assert detect_dn_offset([band], {}) == (-1000.0, "MTD_MSIL2A.xml PROCESSING_BASELINE 05.09")
    (product / "MTD_MSIL2A.xml").write_text(
        "<root><BOA_ADD_OFFSET_VALUES_LIST><BOA_ADD_OFFSET band_id='0'>-1000</BOA_ADD_OFFSET>"
        "</BOA_ADD_OFFSET_VALUES_LIST></root>"
    )
    offset, source = detect_dn_offset([band], {})
    assert offset == -1000.0 and "MTD_MSIL2A.xml" in source
    assert detect_dn_offset([tmp_path / "a.tif"], {"BOA_ADD_OFFSET_B4": "-1000"})[0] == -1000.0
    old = tmp_path / "S2A_MSIL2A_20170101T000000_N0204_R000_T33UUU_x.SAFE" / "B04.jp2"
    assert detect_dn_offset([old], {})[0] == 0.0


def test_group_inputs(tmp_path: Path, s2_scene: Path) -> None:
    files = [tmp_path / f"T33UUU_20170216T102101_{b}.jp2" for b in ("B02", "B03", "B8A")]
    for f in files:
        f.write_bytes(b"")
    groups = group_inputs([*files, s2_scene])
    assert [g[0] for g in groups] == ["T33UUU_20170216T102101", "scene"]
    assert groups[0][1] == tuple(files)
    with pytest.raises(SceneError, match="does not exist"):
        group_inputs([tmp_path / "missing.tif"])


@needs_havel
def test_sentinel2_band_files_resampled_to_10m() -> None:
    files = sorted(HAVEL_JP2.glob("*.jp2"))
    ((name, paths),) = group_inputs(files)
    scene = open_scene(paths, name=name)
    assert scene.shape_rc == (768, 1536) and scene.res_xy == (10.0, 10.0)
    assert len(scene.bands) == 13 and scene.band_names[8] == "B8A"
    assert match_bands(scene, RGB_BANDS, None).indexes == (3, 2, 1)
    names = list(scene.band_names)
    # 20 m (B05, B8A) and 60 m (B01) bands read on the 10 m grid equal the stacked scene
    picks = [names.index(b) for b in ("B01", "B05", "B8A", "B04")]
    window = Window(101, 37, 150, 90)
    with SceneReader(scene, picks) as reader:
        dn, valid = reader.read(window)
    with rasterio.open(HAVEL) as src:
        ref = src.read([1, 5, 13, 4], window=window)
    np.testing.assert_array_equal(dn, ref.astype(np.float32))
    assert valid.all()
