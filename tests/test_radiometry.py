"""Scene radiometry and ground scale: what the digital numbers mean, checked on generated scenes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from click.testing import CliRunner
from conftest import synthetic_s2
from rasterio.crs import CRS

from geocam.cli import main
from geocam.errors import RadiometryError
from geocam.radiometry import (
    RGB8_DN_PER_LEVEL,
    decide_radiometry,
    detect_level,
    ground_sample_m,
    level_from_text,
    plan_ground_scale,
)

RGB = (3, 2, 1)  # B04, B03, B02 in a 13-band EuroSAT-order scene


def decide(sample: np.ndarray, **kwargs: object) -> object:
    args: dict[str, object] = {
        "dtype": "uint16",
        "positions": (0, 1, 2),
        "gdal_scales": (1.0, 1.0, 1.0),
        "gdal_offsets": (0.0, 0.0, 0.0),
        "declared_scale": None,
        "dn_offset": 0.0,
        "dn_offset_source": "default",
        "dn_offset_declared": False,
        "level": ("L1C", "test"),
        "sample_dn": sample.astype(np.float32),
        "band_names": ("B04", "B03", "B02"),
        "l2a_path_radiance": False,
    }
    args.update(kwargs)
    return decide_radiometry(**args)  # type: ignore[arg-type]


def land(scale: float = 1.0, n: int = 4000, seed: int = 0) -> np.ndarray:
    """(3, n) reflectance x 10000 of a mixed land scene, times ``scale``."""
    rng = np.random.default_rng(seed)
    return rng.uniform(300, 2500, (3, n)) * scale


def test_level_from_names_tags_and_metadata() -> None:
    assert (
        level_from_text(["/d/S2B_MSIL2A_20230101T000000_N0509_R000_T33UUU.SAFE/B04.jp2"]) == "L2A"
    )
    assert level_from_text(["exeter_uk_s2l2a_20240602.tif"]) == "L2A"
    assert level_from_text(["havel_s2l1c_20170216.tif"]) == "L1C"
    assert level_from_text(["l2ab_scene.tif"]) is None
    assert level_from_text(["my_scene.tif"]) is None
    assert detect_level("l2a", None, [], {}, "")[0] == "L2A"
    assert detect_level(None, "Level-1C", [], {}, "")[0] == "L1C"
    assert detect_level(None, None, [], {"PRODUCT_LEVEL": "L2A"}, "")[0] == "L2A"
    assert detect_level(None, None, ["x.tif"], {}, "tag BOA_ADD_OFFSET")[0] == "L2A"
    assert detect_level(None, None, ["x.tif"], {}, "default")[0] == "unknown"


def test_scales_and_offsets() -> None:
    sample = land()
    r = decide(sample)
    assert r.gain == (1.0,) * 3 and r.add == (0.0,) * 3 and r.kind == "reflectance"
    r = decide(sample / 10, declared_scale=1000.0)
    assert r.gain == (10.0,) * 3
    r = decide(sample / 10000, dtype="float32")
    assert r.gain == (10000.0,) * 3 and "0-1" in r.scale_source
    r = decide(sample + 1000, dn_offset=-1000.0, dn_offset_source="tag BOA_ADD_OFFSET")
    assert r.add == (-1000.0,) * 3
    gdal = decide(sample + 1000, gdal_scales=(1e-4,) * 3, gdal_offsets=(-0.1,) * 3)
    np.testing.assert_allclose(gdal.gain, 1.0)
    np.testing.assert_allclose(gdal.add, -1000.0)
    rgb8 = decide(np.clip(sample / 2750 * 255, 0, 255), dtype="uint8")
    assert rgb8.kind == "rgb8" and rgb8.gain == (RGB8_DN_PER_LEVEL,) * 3


def test_implausible_values_are_refused_with_the_fix() -> None:
    with pytest.raises(RadiometryError, match="--reflectance-scale"):
        decide(land(scale=0.1))  # x1000 read as x10000
    with pytest.raises(RadiometryError, match="--reflectance-scale"):
        decide(land(scale=0.1), declared_scale=10000.0)
    with pytest.raises(RadiometryError, match="brighter than any surface"):
        decide(land(scale=10))
    with pytest.raises(RadiometryError, match="negative"):
        decide(land(), dn_offset=-4000.0, dn_offset_source="--dn-offset", dn_offset_declared=True)
    decide(land(scale=0.1), check=False)  # the user's override


def test_l2a_path_radiance_makes_l2a_l1c_like() -> None:
    l2a = decide(land(), level=("L2A", "tag"), l2a_path_radiance=True)
    assert l2a.add == (250.0, 350.0, 600.0) and "path radiance" in l2a.scale_source
    l1c = decide(land(), level=("L1C", "tag"), l2a_path_radiance=True)
    assert l1c.add == (0.0,) * 3


def test_l2a_without_offset_metadata_gets_it() -> None:
    r = decide(land() + 1000, level=("L2A", "file name"))
    assert r.add == (-1000.0,) * 3 and "still carries BOA_ADD_OFFSET" in r.scale_source
    kept = decide(land() + 1000, level=("L2A", "file name"), dn_offset_declared=True)
    assert kept.add == (0.0,) * 3
    l1c = decide(land() + 1000, level=("L1C", "file name"))  # a hazy L1C keeps its numbers
    assert l1c.add == (0.0,) * 3


@pytest.mark.parametrize(
    ("crs", "transform", "expected_m"),
    [
        ("EPSG:32633", Affine(10, 0, 330000, 0, -10, 5822040), (10.0, 10.0)),
        ("EPSG:27700", Affine(20, 0, 290000, 0, -20, 95000), (20.0, 20.0)),
        # Web Mercator units shrink by cos(latitude): 10 units at 41 N are 7.5 m
        ("EPSG:3857", Affine(10, 0, 1_000_000, 0, -10, 5_012_000), (7.55, 7.55)),
        ("EPSG:4326", Affine(0.0001, 0, 12.6, 0, -0.0001, 52.5), (6.8, 11.1)),
    ],
)
def test_ground_sample_distance(
    crs: str, transform: Affine, expected_m: tuple[float, float]
) -> None:
    gsd = ground_sample_m(CRS.from_user_input(crs), transform, (100, 100))
    np.testing.assert_allclose(gsd, expected_m, rtol=0.02)


def test_ground_scale_plan() -> None:
    same = plan_ground_scale((10.0, 10.0), 10.0, 64, 1.0)
    assert (same.window_px, same.input_scale, same.how) == (64, 1.0, "as is")
    coarse = plan_ground_scale((20.0, 20.0), 10.0, 64, 1.0)
    assert (coarse.window_px, coarse.input_scale, coarse.how) == (32, 2.0, "resampled")
    fine = plan_ground_scale((7.5, 7.5), 10.0, 64, 1.0)
    assert fine.window_px == 88 and fine.input_scale == pytest.approx(64 / 88)
    with pytest.raises(RadiometryError, match="300.0 m"):
        plan_ground_scale((300.0, 300.0), 10.0, 64, 1.0)
    with pytest.raises(RadiometryError, match="resample it first"):
        plan_ground_scale((1.0, 1.0), 10.0, 64, 1.0)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["run", *args])
    return result.exit_code, result.output


def rgb8_of(data: np.ndarray) -> np.ndarray:
    return np.clip(data[list(RGB)].astype(np.float32) / 2750 * 255, 0, 255).astype(np.uint8)


def test_cli_input_kinds(make_scene: Callable[..., Path], tiny_model: Path, tmp_path: Path) -> None:
    data = synthetic_s2((96, 128))
    # an 8-bit true-colour rendering runs, read through the EuroSAT stretch
    rgb8 = make_scene("rgb8.tif", data=rgb8_of(data), descriptions=("B04", "B03", "B02"))
    code, out = run(str(rgb8), "--model", str(tiny_model), "--out", str(tmp_path / "a"), "-q")
    assert code == 0, out
    record = (tmp_path / "a/run.json").read_text()
    assert '"kind": "rgb8"' in record
    # a 20 m scene runs with windows of the model's ground size (32 px), outputs on its grid
    t20 = Affine(20.0, 0.0, 330000.0, 0.0, -20.0, 5822040.0)
    s20 = make_scene("s20.tif", data=data, transform=t20)
    code, out = run(str(s20), "--model", str(tiny_model), "--out", str(tmp_path / "b"), "-q")
    assert code == 0, out
    record = (tmp_path / "b/run.json").read_text()
    assert '"window_px": 32' in record and '"how": "resampled"' in record
    # a 300 m scene and an x1000 scene read as x10000 are refused: exit 2, one line, no output
    t300 = Affine(300.0, 0.0, 330000.0, 0.0, -300.0, 5822040.0)
    s300 = make_scene("s300.tif", data=data, transform=t300)
    x1000 = make_scene("x1000.tif", data=(data // 10).astype(np.uint16))
    for scene, message in ((s300, "300.0 m on the ground"), (x1000, "--reflectance-scale 1000")):
        target = tmp_path / scene.stem
        code, out = run(str(scene), "--model", str(tiny_model), "--out", str(target), "-q")
        assert code == 2 and message in out and out.count("\n") == 1, out
        assert not target.exists()
    code, out = run(str(x1000), "--model", str(tiny_model), "--out", str(tmp_path / "c"), "-q",
                    "--reflectance-scale", "1000")  # fmt: skip
    assert code == 0, out
