from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
import torch
from affine import Affine
from click.testing import CliRunner
from conftest import HAVEL, REAL_MODEL, SAMPLE, synthetic_s2, tiny_card, write_raster
from PIL import Image

from geocam import SceneConfig, pipeline, run_scene
from geocam.batch import MANIFEST_NAME
from geocam.cam import cpu_supports_bf16
from geocam.cli import main
from geocam.cli.logs import RUN_LOG
from geocam.config import BandSpec
from geocam.errors import ConfigError, SceneError, TilingError
from geocam.model import EUROSAT_CLASSES, build_net, save_model
from geocam.preview import PreviewGrid

OUTPUTS = {
    "cam.tif",
    "classes.tif",
    "classes.tif.aux.xml",
    "salient.gpkg",
    "salient.geojson",
    "preview.png",
    "preview.pgw",
    "preview.png.aux.xml",
    "cam.qml",
    "classes.qml",
    "salient.qml",
    "project.qgs",
    "run.json",
}


def files_in(folder: Path) -> set[str]:
    return {p.name for p in folder.rglob("*")} if folder.exists() else set()


def check_outputs(out: Path, scene_path: Path, classes: tuple[str, ...] | None = None) -> None:
    # nothing else (no temporary files) left behind; the CLI adds the manifest and its log
    assert files_in(out) - {MANIFEST_NAME, RUN_LOG} == OUTPUTS
    with rasterio.open(scene_path) as src:
        crs, transform, shape, bounds = src.crs, src.transform, src.shape, src.bounds
    for name in ("cam.tif", "classes.tif"):
        with rasterio.open(out / name) as r:
            assert r.crs == crs and r.transform.almost_equals(transform) and r.shape == shape
            assert r.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
            tags = r.tags()
            assert tags["TIFFTAG_SOFTWARE"].startswith("geocam ")
            assert len(tags["GEOCAM_MODEL_SHA256"]) == 64 and tags["GEOCAM_DATE"]
    with rasterio.open(out / "cam.tif") as r:
        assert r.dtypes[0] == "float32" and np.isnan(r.nodata)
        if classes:
            assert r.descriptions == classes
        heat = r.read()
        assert np.nanmax(heat) <= 1.0 + 1e-6 and np.nanmin(heat) >= 0.0
    with rasterio.open(out / "classes.tif") as r:
        assert r.dtypes[0] == "uint8" and r.nodata == 255
        assert r.colormap(1)[0][3] == 255
        assert "CLASS_NAMES" in r.tags()
    gpkg = gpd.read_file(out / "salient.gpkg", layer="salient")
    assert gpkg.crs == crs or gpkg.crs.equals(crs.to_wkt())
    assert gpkg.geometry.is_valid.all()
    if len(gpkg):
        minx, miny, maxx, maxy = gpkg.total_bounds
        assert bounds.left - 1e-6 <= minx and maxx <= bounds.right + 1e-6
        assert bounds.bottom - 1e-6 <= miny and maxy <= bounds.top + 1e-6
        assert (gpkg["area_m2"] > 0).all()
        assert set(gpkg.columns) >= {
            "class",
            "mean_activation",
            "max_activation",
            "mean_probability",
            "area_m2",
        }
    gj = json.loads((out / "salient.geojson").read_text())
    assert "crs" not in gj  # RFC 7946: implicit WGS84
    from rasterio.warp import transform_bounds

    west, south, east, north = transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=51)
    for feature in gj["features"]:
        ring = np.asarray(feature["geometry"]["coordinates"][0])
        assert ((ring[:, 0] >= west - 1e-6) & (ring[:, 0] <= east + 1e-6)).all()
        assert ((ring[:, 1] >= south - 1e-6) & (ring[:, 1] <= north + 1e-6)).all()
        x, y = ring[:, 0], ring[:, 1]
        assert np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]) > 0  # counter-clockwise exterior


def test_run_scene_end_to_end(s2_scene: Path, tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    config = SceneConfig(stride_px=16, sieve_px=4, threads=1)
    result = run_scene(s2_scene, tiny_model, out, config)
    assert result.windows == 15 and result.windows_skipped == 0
    check_outputs(
        out, s2_scene, classes=tuple(json.loads((out / "run.json").read_text())["model"]["classes"])
    )
    run = json.loads((out / "run.json").read_text())
    assert run["windows"]["scored"] == 15 and run["parameters"]["stride_px"] == 16
    assert run["model"]["sha256"] and run["versions"]["torch"]
    assert run["scene"]["bands_used"]["B04"]["scene_band"] == 4
    assert {"model", "stitch", "read", "load_model", "total"} <= set(run["timings_s"])
    assert run["timings_s"]["load_model"] > 0
    assert run["peak_rss_mib"] is None or run["peak_rss_mib"] > 100


def test_run_records_areas_ids_and_provenance(
    s2_scene: Path, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1487239200")  # 2017-02-16T10:00:00Z
    config = SceneConfig(stride_px=16, sieve_px=4, threads=1, threshold=0.3)
    runs = [run_scene(s2_scene, tiny_model, tmp_path / f"run{i}", config) for i in range(2)]
    out = runs[0].out_dir
    run = json.loads((out / "run.json").read_text())
    assert run["provenance"]["GEOCAM_DATE"] == "2017-02-16T10:00:00Z"
    assert run["provenance"]["GEOCAM_MODEL_SHA256"] == run["model"]["sha256"]
    with rasterio.open(out / "classes.tif") as r:
        assert r.tags()["TIFFTAG_DATETIME"] == "2017:02:16 10:00:00"
        cls = r.read(1)
    names = run["model"]["classes"]
    areas = run["class_area_m2"]  # 10 m pixels
    assert areas == {n: float((cls == i).sum() * 100) for i, n in enumerate(names)}
    gpkg = gpd.read_file(out / "salient.gpkg", layer="salient", fid_as_index=True)
    assert len(gpkg) > 0
    per_class = run["polygons"]["area_m2_per_class"]
    for name in names:
        assert per_class[name] == pytest.approx(gpkg.loc[gpkg["class"] == name, "area_m2"].sum())
    features = json.loads((out / "salient.geojson").read_text())["features"]
    assert [f["id"] for f in features] == gpkg.index.tolist()
    assert [f["properties"]["class"] for f in features] == gpkg["class"].tolist()
    # A rerun writes the same bytes (run.json holds timings).
    for name in OUTPUTS - {"run.json"}:
        assert (out / name).read_bytes() == (runs[1].out_dir / name).read_bytes(), name
    # The project shows the heat of the class covering most of the scene.
    top = int(np.argmax([areas[n] for n in names])) + 1
    assert f'type="singlebandpseudocolor" band="{top}"' in (out / "cam.qml").read_text()


def test_blocks_do_not_change_the_result(s2_scene: Path, tiny_model: Path, tmp_path: Path) -> None:
    cams = []
    for block in (64, 512):
        out = tmp_path / f"b{block}"
        run_scene(
            s2_scene, tiny_model, out, SceneConfig(stride_px=16, block_px=block, preview=False)
        )
        with rasterio.open(out / "cam.tif") as r:
            cams.append(r.read())
        with rasterio.open(out / "classes.tif") as r:
            cams.append(r.read().astype(np.float32))
    np.testing.assert_allclose(cams[0], cams[2], atol=1e-6)
    # Interpolation runs as float32 matrix products whose rounding depends on the block's shape:
    # a pixel whose two best classes tie to within that rounding may flip.
    assert (cams[1] != cams[3]).mean() < 1e-3


def test_threads_do_not_change_the_outputs(
    s2_scene: Path, tiny_model: Path, tmp_path: Path
) -> None:
    # Pass 2 finishes blocks on all threads and writes the COGs while polygons merge; the
    # outputs are those of one thread, in the same order.
    runs = {}
    for threads in (1, 2):
        out = tmp_path / f"t{threads}"
        config = SceneConfig(stride_px=16, block_px=64, threads=threads, preview=False)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. rasterio's leaking NotGeoreferencedWarning
            run_scene(s2_scene, tiny_model, out, config)
        with rasterio.open(out / "cam.tif") as cam, rasterio.open(out / "classes.tif") as cls:
            runs[threads] = (
                cam.read(),
                cls.read(),
                gpd.read_file(out / "salient.gpkg", layer="salient"),
            )
    (cam1, cls1, poly1), (cam2, cls2, poly2) = runs[1], runs[2]
    # torch's float32 reductions in the model pass depend on its thread count (about 3e-6 here)
    np.testing.assert_allclose(cam1, cam2, atol=1e-5)
    assert np.array_equal(cls1, cls2)
    assert len(poly1) > 1 and list(poly1["class"]) == list(poly2["class"])
    assert poly1.geometry.geom_equals(poly2.geometry).all()


def test_preview_from_the_models_reads_equals_a_separate_read(
    make_scene: Callable[..., Path],
    tiny_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scene = make_scene("p.tif", data=synthetic_s2((100, 139)))
    config = SceneConfig(block_px=64, preview_px=40)  # preview step 4 across 64 px blocks
    run_scene(scene, tiny_model, tmp_path / "kept", config)
    monkeypatch.setattr(PreviewGrid, "add_rgb", lambda *args: None)
    run_scene(scene, tiny_model, tmp_path / "read", config)
    kept = np.asarray(Image.open(tmp_path / "kept/preview.png"))
    read = np.asarray(Image.open(tmp_path / "read/preview.png"))
    assert kept.shape == read.shape and np.array_equal(kept, read)


def test_inward_grid_covers_the_whole_scene(
    make_scene: Callable[..., Path], tiny_model: Path, tmp_path: Path
) -> None:
    # 100 x 139 px: the inward grid's last row and column sit off the 32 px stride lattice and
    # snap to the stitching lattice; every pixel still gets a value.
    scene = make_scene("odd.tif", data=synthetic_s2((100, 139)))
    run_scene(scene, tiny_model, tmp_path / "o", SceneConfig(grid="inward", preview=False))
    with rasterio.open(tmp_path / "o/cam.tif") as r:
        assert not np.isnan(r.read()).any()
    with rasterio.open(tmp_path / "o/classes.tif") as r:
        assert (r.read() != 255).all()


def test_nodata_area_and_skipped_windows(
    make_scene: Callable[..., Path], tiny_model: Path, tmp_path: Path
) -> None:
    data = synthetic_s2((96, 128))
    data[:, :, :64] = 0
    scene = make_scene("nd.tif", data=data, nodata=0)
    result = run_scene(scene, tiny_model, tmp_path / "o", SceneConfig(stride_px=32, preview=False))
    assert result.windows_skipped == 2 and result.windows == 4
    with rasterio.open(tmp_path / "o/cam.tif") as r:
        heat = r.read(1)
    with rasterio.open(tmp_path / "o/classes.tif") as r:
        cls = r.read(1)
    assert np.isnan(heat[:, :64]).all() and (cls[:, :64] == 255).all()
    assert not np.isnan(heat[:, 64:]).any() and (cls[:, 64:] != 255).all()


def test_geographic_crs(make_scene: Callable[..., Path], tiny_model: Path, tmp_path: Path) -> None:
    # about 10 x 10 m on the ground at 52.5 N
    transform = Affine(0.000148, 0, 12.6, 0, -0.00009, 52.5)
    scene = make_scene("geo.tif", crs="EPSG:4326", transform=transform)
    out = tmp_path / "geo"
    run_scene(scene, tiny_model, out, SceneConfig(stride_px=16, sieve_px=4, threshold=0.2))
    check_outputs(out, scene)
    gpkg = gpd.read_file(out / "salient.gpkg", layer="salient")
    assert len(gpkg)
    utm = gpkg.to_crs(32633)
    np.testing.assert_allclose(gpkg["area_m2"], utm.area, rtol=5e-3)


def test_reflectance_scale_gives_same_result(
    make_scene: Callable[..., Path], tiny_model: Path, tmp_path: Path
) -> None:
    data = synthetic_s2((96, 128))
    a = make_scene("a.tif", data=data)
    b = make_scene("b.tif", data=(data // 10).astype(np.uint16) * 1)
    run_scene(a, tiny_model, tmp_path / "a", SceneConfig(preview=False, reflectance_scale=10000))
    run_scene(b, tiny_model, tmp_path / "b", SceneConfig(preview=False, reflectance_scale=1000))
    with (
        rasterio.open(tmp_path / "a/classes.tif") as ra,
        rasterio.open(tmp_path / "b/classes.tif") as rb,
    ):
        assert (ra.read() == rb.read()).mean() > 0.95  # equal up to the rounding of DN / 10


def test_all_nodata_scene_raises_and_leaves_nothing(
    make_scene: Callable[..., Path], tiny_model: Path, tmp_path: Path
) -> None:
    scene = make_scene("zero.tif", data=np.zeros((13, 96, 128), np.uint16), nodata=0)
    out = tmp_path / "o"
    with pytest.raises(SceneError, match="all nodata"):
        run_scene(scene, tiny_model, out)
    assert not out.exists()


def test_scene_smaller_than_window(
    make_scene: Callable[..., Path], tiny_model: Path, tmp_path: Path
) -> None:
    scene = make_scene("small.tif", shape_rc=(40, 128))
    with pytest.raises(TilingError, match="smaller than one window"):
        run_scene(scene, tiny_model, tmp_path / "o")
    assert not (tmp_path / "o").exists()


# ---- CLI -----------------------------------------------------------------------------------


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["run", *args])
    return result.exit_code, result.output


def test_cli_run(s2_scene: Path, tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    code, output = run_cli(str(s2_scene), "--model", str(tiny_model), "--out", str(out), "--stride-px", "32",
                           "--bands", "B04=4,B03=3,B02=2", "--threads", "1", "--precision", "fp32", "-q")  # fmt: skip
    assert code == 0, output
    assert f"Outputs in {out}/" in output
    assert (out / MANIFEST_NAME).is_file()  # the batch's manifest (tests/test_batch.py)
    check_outputs(out, s2_scene)
    run = json.loads((out / "run.json").read_text())
    assert run["scene"]["band_match"] == "--bands" and run["parameters"]["precision"] == "fp32"


def test_cli_config_file_and_several_scenes(
    s2_scene: Path, make_scene: Callable[..., Path], tiny_model: Path, tmp_path: Path
) -> None:
    other = make_scene("other.tif", seed=1)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("stride_px: 64\npreview: false\n")
    out = tmp_path / "multi"
    code, output = run_cli(
        str(s2_scene),
        str(other),
        "--model",
        str(tiny_model),
        "--out",
        str(out),
        "--config",
        str(cfg),
        "-q",
    )
    assert code == 0, output
    assert (out / "scene/cam.tif").exists() and (out / "other/cam.tif").exists()
    assert not (out / "scene/preview.png").exists()
    assert not (out / "scene/preview.pgw").exists()
    project = (out / "project.qgs").read_text()  # one project for the batch, relative paths
    assert "./scene/cam.tif" in project and "./other/classes.tif" in project
    assert "preview" not in project


def bad_inputs(tmp_path: Path, tiny_model: Path) -> dict[str, tuple[list[str], str]]:
    good = write_raster(tmp_path / "good.tif", synthetic_s2((96, 128)))
    text = tmp_path / "text.tif"
    text.write_text("not a raster")
    nocrs = write_raster(tmp_path / "nocrs.tif", synthetic_s2((96, 128)), crs=None)
    rotated = write_raster(
        tmp_path / "rot.tif", synthetic_s2((96, 128)), transform=Affine(10, 1, 0, 1, -10, 0)
    )
    small = write_raster(tmp_path / "small.tif", synthetic_s2((32, 32)))
    nob4 = write_raster(
        tmp_path / "nob4.tif", synthetic_s2((96, 128))[:3], descriptions=("B01", "B02", "B03")
    )
    empty = write_raster(tmp_path / "empty.tif", np.zeros((13, 96, 128), np.uint16), nodata=0)
    not_model = tmp_path / "model.safetensors"
    not_model.write_bytes(b"\x00" * 64)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the output folder should go")
    model = ["--model", str(tiny_model)]
    return {
        "not a raster": ([str(text), *model], "not a raster"),
        "no crs": ([str(nocrs), *model], "no CRS"),
        "rotated": ([str(rotated), *model], "rotated or sheared"),
        "smaller than window": ([str(small), *model], "smaller than one window"),
        "missing band": ([str(nob4), *model], "lacks band"),
        "bad --bands index": ([str(good), *model, "--bands", "B04=20,B03=3,B02=2"], "out of range"),
        "all nodata": ([str(empty), *model], "all nodata"),
        "not a geocam model": ([str(good), "--model", str(not_model)], "not a safetensors"),
        "missing model": (
            [str(good), "--model", str(tmp_path / "nope.safetensors")],
            "does not exist",
        ),
        "output not writable": (
            [str(good), *model, "--out", str(blocker / "out")],
            "cannot be written",
        ),
        "stride > window": ([str(good), *model, "--stride-px", "65"], "exceeds `window_px`"),
    }


CASES = ["not a raster", "no crs", "rotated", "smaller than window", "missing band", "bad --bands index",
         "all nodata", "not a geocam model", "missing model", "output not writable", "stride > window"]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_cli_bad_input_exits_2_and_writes_nothing(
    case: str, tiny_model: Path, tmp_path: Path
) -> None:
    args, message = bad_inputs(tmp_path, tiny_model)[case]
    out = tmp_path / "out"
    if "--out" not in args:
        args = [*args, "--out", str(out)]
    code, output = run_cli(*args, "-q")
    assert code == 2, output
    lines = [line for line in output.splitlines() if line.startswith("geocam: error:")]
    assert len(lines) == 1 and message in lines[0], output
    assert not out.exists() or files_in(out) == set()


# ---- the real model on real data -----------------------------------------------------------

needs_real_model = pytest.mark.skipif(
    not REAL_MODEL.exists(), reason=f"bundled model {REAL_MODEL.name} not in data/models yet"
)


WATER = {"SeaLake", "River"}


def class_at(out: Path, names: list[str], rc: tuple[int, int], radius: int = 6) -> str:
    with rasterio.open(out / "classes.tif") as r:
        cls = r.read(1)
    r0, c0 = rc
    patch = cls[r0 - radius : r0 + radius, c0 - radius : c0 + radius]
    return names[int(np.bincount(patch.ravel(), minlength=256)[:255].argmax())]


def share_of(
    out: Path, names: list[str], classes: set[str], rc: tuple[int, int], radius: int
) -> float:
    """Share of the pixels within ``radius`` of ``rc`` whose class is one of ``classes``."""
    with rasterio.open(out / "classes.tif") as r:
        cls = r.read(1)
    patch = cls[rc[0] - radius : rc[0] + radius + 1, rc[1] - radius : rc[1] + radius + 1]
    return float(np.isin(patch, [names.index(n) for n in classes]).mean())


@needs_real_model
def test_real_model_on_bundled_sample(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    code, output = run_cli(str(SAMPLE), "--model", str(REAL_MODEL), "--out", str(out), "-q")
    assert code == 0, output
    check_outputs(out, SAMPLE)
    run = json.loads((out / "run.json").read_text())
    names = run["model"]["classes"]
    # the lake (a winter scene: the model calls much open water River; its middle is a mixed,
    # weakly activated area for this model, so look at the lake's 49 x 49 px around it)
    assert share_of(out, names, WATER, (162, 270), radius=24) > 0.5
    assert class_at(out, names, (72, 380)) in WATER
    gpkg = gpd.read_file(out / "salient.gpkg", layer="salient")
    with rasterio.open(SAMPLE) as src:
        lake = shapely.Point(src.xy(162, 270))
    water = gpkg[gpkg["class"].isin(WATER)]
    assert water.intersects(lake.buffer(300)).any()  # a water polygon within 300 m


@pytest.mark.slow
@needs_real_model
@pytest.mark.skipif(not HAVEL.exists(), reason="../shared Havel scene not present")
def test_real_model_on_full_havel(tmp_path: Path) -> None:
    out = tmp_path / "havel"
    code, output = run_cli(str(HAVEL), "--model", str(REAL_MODEL), "--out", str(out), "-q")
    assert code == 0, output
    check_outputs(out, HAVEL)
    names = json.loads((out / "run.json").read_text())["model"]["classes"]
    # the lake chain east (the bundled sample's lake: a mixed, weakly activated middle)
    assert share_of(out, names, WATER, (290, 1230), radius=24) > 0.5
    assert class_at(out, names, (200, 1340)) in WATER
    assert class_at(out, names, (430, 245)) == "Forest"  # forest west (inside, not its edge)
    assert class_at(out, names, (20, 600)) == "Forest"  # forest north
    gpkg = gpd.read_file(out / "salient.gpkg", layer="salient")
    assert "Forest" in set(gpkg["class"]) and set(gpkg["class"]) & WATER


def test_dense_mode_end_to_end_and_block_size(
    make_scene: Callable[..., Path], tiny_model: Path, tmp_path: Path
) -> None:
    scene = make_scene("big.tif", shape_rc=(320, 384), seed=3)
    out = {}
    for block in (128, 1024):
        out[block] = tmp_path / f"dense{block}"
        result = run_scene(
            scene,
            tiny_model,
            out[block],
            SceneConfig(
                mode="dense", stride_px=32, block_px=block, preview=block == 128, threads=1
            ),
        )
        assert result.windows > 0
    check_outputs(out[128], scene, classes=EUROSAT_CLASSES)
    run = json.loads((out[128] / "run.json").read_text())
    assert run["parameters"]["engine"] == "dense"
    with (
        rasterio.open(out[128] / "classes.tif") as a,
        rasterio.open(out[1024] / "classes.tif") as b,
    ):
        ca, cb = a.read(1), b.read(1)
    # 64 px of context around every block: seams barely change the result
    assert (ca == cb).mean() > 0.98
    with rasterio.open(out[128] / "cam.tif") as a, rasterio.open(out[1024] / "cam.tif") as b:
        ha, hb = a.read(), b.read()
    assert np.corrcoef(ha.ravel(), hb.ravel())[0, 1] > 0.99


@pytest.mark.parametrize(
    "options, message",
    [
        ({"stride_px": 48}, "multiple of 32"),
        ({"stride_px": 32, "grid": "inward"}, "lattice"),
    ],
)
def test_dense_mode_needs_the_feature_lattice(
    s2_scene: Path, tiny_model: Path, tmp_path: Path, options: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        run_scene(s2_scene, tiny_model, tmp_path / "o", SceneConfig(mode="dense", **options))
    assert not (tmp_path / "o").exists()


def test_sigterm_leaves_no_temporary_output(
    make_scene: Callable[..., Path], tmp_path: Path
) -> None:
    card = tiny_card()
    model = tmp_path / "r18.safetensors"
    save_model(model, build_net("resnet18", 3, 10), replace(card, architecture="resnet18"))
    scene = make_scene("big.tif", shape_rc=(1024, 1024))
    out = tmp_path / "out"
    geocam = Path(sys.executable).with_name("geocam")
    proc = subprocess.Popen(
        [str(geocam), "run", str(scene), "--model", str(model), "--out", str(out),
         "--stride-px", "16", "--threads", "1", "-q"],
        stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not list(out.glob(".geocam-tmp-*")) and time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert files_in(out) == set()  # the temporary folder (and the new output folder) are gone


@pytest.mark.parametrize(
    ("precision", "dtype"),
    [
        pytest.param(
            "bf16",
            torch.bfloat16,
            marks=pytest.mark.skipif(not cpu_supports_bf16(), reason="no native bf16 on this CPU"),
        ),
        ("fp32", torch.float32),
    ],
)
def test_run_model_is_loaded_in_the_compute_dtype(
    s2_scene: Path, tiny_model: Path, tmp_path: Path, precision: str, dtype: torch.dtype
) -> None:
    # The engines use such a model as it is; a float32 one would be copied (twice the memory).
    config = SceneConfig(precision=precision, device="cpu")  # type: ignore[arg-type]
    loaded = pipeline.load_run_model(tiny_model, config)
    assert {p.dtype for p in loaded.net.parameters()} == {dtype}
    out = tmp_path / "o"
    code, output = run_cli(str(s2_scene), "--model", str(tiny_model), "--out", str(out),
                           "--bands", "B04=4,B03=3,B02=2", "--threads", "1", "--no-preview",
                           "--precision", precision, "-q")  # fmt: skip
    assert code == 0, output
    assert json.loads((out / "run.json").read_text())["parameters"]["precision"] == precision


def test_a_run_calls_its_stage_hooks_in_order(
    s2_scene: Path, tiny_model: Path, tmp_path: Path
) -> None:
    # The process owner's tuning (the CLI's malloc settings) runs through explicit hooks; a
    # library call gets none.
    from geocam.runtime import NO_HOOKS, StageHooks

    calls: list[str] = []
    hooks = StageHooks(
        model_pass=lambda: calls.append("model_pass"),
        raster_pass=lambda: calls.append("raster_pass"),
        release=lambda: calls.append("release"),
    )
    config = SceneConfig(bands=BandSpec.parse("B04=4,B03=3,B02=2"), threads=1, preview=False)
    run_scene(s2_scene, tiny_model, tmp_path / "o", config, hooks=hooks)
    assert calls[:2] == ["model_pass", "raster_pass"] and set(calls[2:]) == {"release"}
    assert NO_HOOKS == StageHooks()
