"""Resumable batches (the manifest), the batch's mosaics and GeoPackage, scoped process state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import torch
from helpers import OPTIONS, TESTS, batch_scenes, digests
from helpers import cli_output as cli

from geocam import SceneConfig, run_scene
from geocam.batch import MANIFEST_NAME
from geocam.errors import SceneError


def test_rerun_skips_current_scenes_and_redoes_changed_ones(
    make_scene: Callable[..., Path], tiny_model: Path, tmp_path: Path
) -> None:
    scenes = [make_scene("a.tif", seed=1), make_scene("b.tif", seed=2)]
    out = tmp_path / "out"
    args = [*map(str, scenes), "--model", str(tiny_model), "--out", str(out), *OPTIONS, "-q"]
    code, output = cli(*args)
    assert code == 0, output
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    entry = manifest["scenes"]["a"]
    assert entry["status"] == "done" and entry["folder"] == "a"
    assert set(entry["outputs"]) == {p.name for p in (out / "a").iterdir()}
    run_a = (out / "a/run.json").stat().st_mtime_ns
    first = digests(out)

    code, output = cli(*args, "--threads", "2")  # execution settings do not redo a scene
    assert code == 0, output
    assert "a: skipped, complete and current" in output and "b: skipped" in output
    assert (out / "a/run.json").stat().st_mtime_ns == run_a and digests(out) == first

    os.utime(scenes[1], ns=(time.time_ns(), time.time_ns()))  # a changed input
    code, output = cli(*args)
    assert "a: skipped" in output and "b: skipped" not in output
    first = digests(out)  # b's provenance date is its file's new modification time

    (out / "a/salient.geojson").unlink()  # a missing output
    code, output = cli(*args)
    assert "a: skipped" not in output and "b: skipped" in output
    assert digests(out) == first

    code, output = cli(*args, "--threshold", "0.6")  # a setting that shapes the outputs
    assert "skipped, complete" not in output
    code, output = cli(*args, "--threshold", "0.6", "--force")
    assert code == 0 and "skipped, complete" not in output


def geocam_subprocess(args: list[str]) -> subprocess.Popen[bytes]:
    """``geocam run ARGS`` in a new process that knows the tiny test architecture."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
    code = "import sys, conftest; from geocam.cli import main; sys.exit(main())"
    return subprocess.Popen([sys.executable, "-c", code, "run", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip


def kill_after_first_scene(args: list[str], out: Path) -> None:
    """Start a batch, kill it with SIGKILL as soon as its manifest holds one finished scene."""
    proc = geocam_subprocess(args)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if json.loads((out / MANIFEST_NAME).read_text())["scenes"]:
                break
        except (OSError, ValueError):
            pass
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        time.sleep(0.02)
    proc.kill()
    proc.wait(timeout=30)


@pytest.mark.parametrize("scheduler", [None, pytest.param("local:2", marks=pytest.mark.slow)])
def test_batch_killed_after_its_first_scene_resumes(
    make_scene: Callable[..., Path],
    tiny_model: Path,
    tmp_path: Path,
    scheduler: str | None,
    request: pytest.FixtureRequest,
) -> None:
    scenes = [make_scene("first.tif", seed=1)]
    scenes += [make_scene(f"big{i}.tif", shape_rc=(512, 512), seed=i) for i in (2, 3)]
    base = [*map(str, scenes), "--model", str(tiny_model), *OPTIONS[:-2], "-q"]
    dask = ["--scheduler", scheduler] if scheduler else []
    reference, out = tmp_path / "reference", tmp_path / "killed"
    assert cli(*base, "--out", str(reference))[0] == 0
    if scheduler:  # the workers (of the killed run and of this process's rerun) know the tiny
        request.getfixturevalue("worker_env")  # test architecture
    kill_after_first_scene([*base, "--out", str(out), *dask], out)
    done = json.loads((out / MANIFEST_NAME).read_text())["scenes"]
    assert 1 <= len(done) < len(scenes)  # killed mid-batch
    first = next(iter(done))
    run_json = out / first / "run.json"
    before = (run_json.read_bytes(), run_json.stat().st_mtime_ns)
    code, output = cli(*base, "--out", str(out), *dask)
    assert code == 0, output
    assert f"{first}: skipped, complete and current" in output
    assert (run_json.read_bytes(), run_json.stat().st_mtime_ns) == before
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporary folder left
    assert digests(out) == digests(reference)


def test_batch_mosaics_and_geopackage(
    make_scene: Callable[..., Path], tiny_model: Path, tmp_path: Path
) -> None:
    scenes = batch_scenes(make_scene)
    out = tmp_path / "out"
    code, output = cli(*map(str, scenes), "--model", str(tiny_model), "--out", str(out),
                       *OPTIONS, "-q")  # fmt: skip
    assert code == 0, output
    with rasterio.open(out / "batch_classes_EPSG32633.vrt") as vrt:
        assert vrt.crs == "EPSG:32633" and vrt.nodata == 255 and vrt.colormap(1)[255][3] == 0
        assert vrt.bounds == (330000, 5820760, 332240, 5822040)  # the union of s1 and s2
        mosaic = vrt.read(1)
    with rasterio.open(out / "s1/classes.tif") as a, rasterio.open(out / "s2/classes.tif") as b:
        s1, s2 = a.read(1), b.read(1)
    # s2 (later by name) covers s1 where it is valid; nodata lets s1 show through.
    expect = np.full(mosaic.shape, 255, np.uint8)
    expect[:96, :128] = s1
    part = expect[32:128, 96:224]
    part[s2 != 255] = s2[s2 != 255]
    np.testing.assert_array_equal(mosaic, expect)
    with rasterio.open(out / "batch_cam_EPSG32633.vrt") as vrt:
        heat = vrt.read()
        assert vrt.count == 10 and vrt.descriptions[0] == "AnnualCrop"
    with rasterio.open(out / "s2/cam.tif") as b:
        s2_heat = b.read()
    assert np.isnan(heat[:, 100:, :50]).all()  # covered by no scene
    np.testing.assert_array_equal(heat[:, 32:128, 96:224], s2_heat)  # s2 has no nodata pixel
    assert (out / "batch_classes_EPSG32632.vrt").exists()

    layers = dict(pyogrio.list_layers(out / "batch_salient.gpkg"))
    assert {"salient_EPSG32633", "salient_EPSG32632"} <= set(layers)
    merged = pyogrio.read_dataframe(out / "batch_salient.gpkg", layer="salient_EPSG32633")
    parts = [
        pyogrio.read_dataframe(out / f"{s}/salient.gpkg", layer="salient") for s in ("s1", "s2")
    ]
    assert len(merged) == sum(len(p) for p in parts) > 0
    assert list(merged["scene"].unique()) == ["s1", "s2"] and merged.crs == "EPSG:32633"
    first = merged[merged["scene"] == "s1"].reset_index(drop=True)
    assert first.geometry.geom_equals(parts[0].geometry).all()
    # Rerun: the batch files are written again byte for byte.
    before = digests(out)
    assert cli(*map(str, scenes), "--model", str(tiny_model), "--out", str(out), *OPTIONS)[0] == 0
    assert digests(out) == before


def test_torch_threads_are_restored_on_every_exit(
    make_scene: Callable[..., Path], tiny_model: Path, tmp_path: Path
) -> None:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_scene(make_scene("ok.tif"), tiny_model, tmp_path / "ok", SceneConfig(threads=2))
        assert torch.get_num_threads() == 1
        empty = make_scene("empty.tif", data=np.zeros((13, 96, 128), np.uint16), nodata=0)
        with pytest.raises(SceneError):
            run_scene(empty, tiny_model, tmp_path / "empty", SceneConfig(threads=2))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(previous)
