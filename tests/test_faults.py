"""Fault injection: kill -9, SIGINT/SIGTERM, full disks, damaged tiles, NaN, clashing names.

Every case ends in a complete, correct output set or a one-line message (exit 2; 130/143 for
signals) with nothing half-written left behind. Killed runs are rerun and compared by SHA-256
with a clean run. Faults are injected by ``fault_driver.py`` in a subprocess.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
import torch
from click.testing import CliRunner
from conftest import synthetic_s2, tiny_card, write_raster

from geocam import SceneConfig, pipeline, preflight, run_scene
from geocam.cli import main
from geocam.errors import DiskSpaceWarning, ModelFormatError, NodataWarning, ResourceError
from geocam.model import EUROSAT_CLASSES, build_net, resolve_init_weights, save_model
from geocam.outputs import STAGING_PREFIX, recover

TESTS = Path(__file__).parent
DRIVER = TESTS / "fault_driver.py"
ARGS = ["--stride-px", "16", "--batch-size", "4", "--threads", "1", "--precision", "fp32", "-q"]
CONFIG = SceneConfig(stride_px=16, batch_size=4, threads=1, precision="fp32")
OLD = SceneConfig(stride_px=32, threads=1, precision="fp32", threshold=0.3, preview=False)


def digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` but run.json (its timings differ run to run)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "run.json"
    }


def complete_set(folder: Path) -> dict[str, str]:
    """The output set in ``folder``, checked complete: run.json's manifest lists every file."""
    files = json.loads((folder / "run.json").read_text())["files"]
    found = digests(folder)
    assert found == {name: entry["sha256"] for name, entry in files.items()}
    assert not list(folder.glob(STAGING_PREFIX + "*"))
    return found


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["run", *args])
    return result.exit_code, result.stderr


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("geocam: error:")]


def one_error(code: int, stderr: str, text: str, expect: int = 2) -> None:
    assert code == expect, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(error_lines(stderr)) == 1 and text in error_lines(stderr)[0], stderr
    assert "Traceback" not in stderr and all(ln.startswith("geocam: ") for ln in lines), (
        stderr
    )  # nothing else: no C library chatter, no traceback


def drive(fault: str, *args: str) -> subprocess.CompletedProcess[str]:
    """geocam run in a subprocess with one fault injected."""
    return subprocess.run(
        [sys.executable, str(DRIVER), fault, "run", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_raster(tmp_path_factory.mktemp("scene") / "scene.tif", synthetic_s2((96, 128)))


@pytest.fixture(scope="module")
def reference(scene: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean run of ``ARGS`` and the old set a faulted run replaces."""
    root = tmp_path_factory.mktemp("ref")
    run_scene(scene, tiny_model, root / "clean", CONFIG)
    run_scene(scene, tiny_model, root / "old", OLD)
    return root


def old_set(reference: Path, out: Path) -> dict[str, str]:
    shutil.copytree(reference / "old", out)
    return complete_set(out)


# ---- kill -9 at many points; the rerun equals a clean run --------------------------------------

#: (fault, which set the folder holds once recovered: the old one, or the new one)
KILLS = [
    pytest.param("geocam.stitch:CellGrid.add@2:kill", "old", id="pass1"),
    pytest.param("geocam.pipeline:_write_block@1:kill", "old", id="pass2", marks=pytest.mark.slow),
    pytest.param("geocam.pipeline:write_cog@2:kill", "old", id="cogs", marks=pytest.mark.slow),
    pytest.param(
        "geocam.pipeline:write_geojson@1:kill", "old", id="vectors", marks=pytest.mark.slow
    ),
    pytest.param("geocam.pipeline:write_json@1:kill", "old", id="run.json", marks=pytest.mark.slow),
    pytest.param("geocam.outputs:_fsync@3:kill", "old", id="flush", marks=pytest.mark.slow),
    pytest.param("commit@1:kill", "new", id="journal", marks=pytest.mark.slow),
    pytest.param("commit@4:kill", "new", id="moves"),
    pytest.param("commit@7:kill", "new", id="marker", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("fault", "holds"), KILLS)
def test_kill_9_then_rerun_equals_a_clean_run(
    fault: str, holds: str, scene: Path, tiny_model: Path, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    before = old_set(reference, out)
    proc = drive(fault, str(scene), "--model", str(tiny_model), "--out", str(out), *ARGS)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    recover(out)  # what any next run does first: the folder holds one whole set
    assert complete_set(out) == (before if holds == "old" else digests(reference / "clean"))
    run_scene(scene, tiny_model, out, CONFIG)
    assert complete_set(out) == digests(reference / "clean")


@pytest.mark.slow
def test_kill_9_with_no_old_outputs_leaves_a_folder_the_rerun_cleans(
    scene: Path, tiny_model: Path, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    proc = drive("geocam.pipeline:write_cog@1:kill", str(scene), "--model", str(tiny_model),
                 "--out", str(out), *ARGS)  # fmt: skip
    assert proc.returncode == -signal.SIGKILL
    assert [p.name[: len(STAGING_PREFIX)] for p in out.iterdir()] == [STAGING_PREFIX]
    code, stderr = cli(str(scene), "--model", str(tiny_model), "--out", str(out), *ARGS)
    assert code == 0, stderr
    assert complete_set(out) == digests(reference / "clean")


# ---- SIGINT and SIGTERM ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "signum", "holds"),
    [
        ("geocam.pipeline:_write_block@1:int", signal.SIGINT, "old"),
        pytest.param(
            "geocam.stitch:CellGrid.add@2:term", signal.SIGTERM, "old", marks=pytest.mark.slow
        ),
        # in the last stage (COGs, vectors, commit) the scene is finished first
        pytest.param(
            "geocam.pipeline:write_cog@1:int", signal.SIGINT, "new", marks=pytest.mark.slow
        ),
        ("commit@3:term", signal.SIGTERM, "new"),
    ],
)
def test_signals_give_one_line_and_a_whole_set(
    fault: str,
    signum: signal.Signals,
    holds: str,
    scene: Path,
    tiny_model: Path,
    reference: Path,
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    before = old_set(reference, out)
    proc = drive(fault, str(scene), "--model", str(tiny_model), "--out", str(out), *ARGS)
    one_error(proc.returncode, proc.stderr, f"interrupted by {signum.name}", 128 + signum)
    # no recover(): the interrupted run itself left one whole set and no staging folder
    assert complete_set(out) == (before if holds == "old" else digests(reference / "clean"))


def test_an_interrupt_during_the_moves_finishes_them(
    scene: Path, tiny_model: Path, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from geocam import outputs

    out = tmp_path / "out"
    old_set(reference, out)
    real_apply, real_replace = outputs._apply, os.replace
    moves = [0]

    def replace(*args: str) -> None:
        moves[0] += 1
        if moves[0] == 3:
            raise KeyboardInterrupt  # Ctrl-C in a library caller, half-way through the moves
        real_replace(*args)

    def apply(*args: object) -> None:
        monkeypatch.setattr(os, "replace", replace)
        try:
            real_apply(*args)
        finally:
            monkeypatch.setattr(os, "replace", real_replace)

    monkeypatch.setattr(outputs, "_apply", apply)
    with pytest.raises(KeyboardInterrupt):
        run_scene(scene, tiny_model, out, CONFIG)
    assert complete_set(out) == digests(reference / "clean")


# ---- full disks ------------------------------------------------------------------------------


def _tmpfs_works(tmp_path: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = tmp_path / "probe"
    probe.mkdir()
    ok = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {probe}"],
        check=False,
        capture_output=True,
    )
    return ok.returncode == 0


#: tmpfs sizes that fill up at different stages here: work files, GeoPackage creation and
#: features, COG directory, preview/run.json. A size that turns out large enough must give a
#: whole, correct set.
SIZES = [
    "100k",
    *(pytest.param(s, marks=pytest.mark.slow) for s in ("200k", "300k", "400k", "500k")),
]


@pytest.mark.parametrize("size", SIZES)
def test_full_disk_on_a_small_tmpfs(
    size: str, scene: Path, tiny_model: Path, reference: Path, tmp_path: Path
) -> None:
    if not _tmpfs_works(tmp_path):
        pytest.skip("no unprivileged tmpfs (unshare -rm) here")
    disk = tmp_path / "disk"
    disk.mkdir()
    out = disk / "out"
    args = " ".join([str(scene), "--model", str(tiny_model), "--out", str(out), *ARGS])
    script = (
        f"mount -t tmpfs -o size={size} tmpfs {disk} && "
        f"{sys.executable} {DRIVER} none run {args}; code=$?; "
        f"ls -A {disk} > {tmp_path}/left.txt; cp -r {disk} {tmp_path}/copy; exit $code"
    )
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    left = (tmp_path / "left.txt").read_text().split()
    if proc.returncode == 0 and size != "100k":  # it fitted: a whole, correct set
        assert left == ["out"]
        assert complete_set(tmp_path / "copy/out") == digests(reference / "clean")
        return
    one_error(proc.returncode, proc.stderr, "ran out of space")
    assert left == []  # nothing left on the disk


def test_a_write_that_finds_the_disk_full(
    scene: Path, tiny_model: Path, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    before = old_set(reference, out)

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pipeline, "write_json", full)
    code, stderr = cli(str(scene), "--model", str(tiny_model), "--out", str(out), *ARGS)
    one_error(code, stderr, "ran out of space")
    assert "old outputs are unchanged" in stderr and complete_set(out) == before


def test_a_geopackage_that_finds_the_disk_full(
    scene: Path, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyogrio.errors import DataSourceError

    def full(*args: object, **kwargs: object) -> None:
        raise DataSourceError("sqlite3_exec(CREATE TABLE x) failed: database or disk is full")

    monkeypatch.setattr(pipeline, "write_gpkg", full)
    out = tmp_path / "out"
    code, stderr = cli(str(scene), "--model", str(tiny_model), "--out", str(out), *ARGS)
    one_error(code, stderr, "ran out of space")
    assert not out.exists()


def test_memory_running_out_is_one_line(
    scene: Path, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def huge(*args: object, **kwargs: object) -> None:
        raise MemoryError("Unable to allocate 146. GiB for an array with shape (10, 62501, 62501)")

    monkeypatch.setattr(pipeline.CellGrid, "__init__", huge)
    out = tmp_path / "out"
    code, stderr = cli(str(scene), "--model", str(tiny_model), "--out", str(out), *ARGS)
    one_error(code, stderr, "ran out of memory (Unable to allocate 146. GiB")
    assert not out.exists()
    with pytest.raises(ResourceError):
        run_scene(scene, tiny_model, out, CONFIG)


# ---- damaged inputs --------------------------------------------------------------------------


def _tiled(path: Path, cog: bool = False) -> Path:
    data = synthetic_s2((256, 256))
    plain = path.with_suffix(".plain.tif")
    with rasterio.open(
        plain, "w", driver="GTiff", count=13, height=256, width=256, dtype="uint16",
        crs="EPSG:32633", transform=rasterio.Affine(10, 0, 330000, 0, -10, 5822040),
        tiled=True, blockxsize=64, blockysize=64, compress="deflate",
    ) as dst:  # fmt: skip
        dst.write(data)
        dst.descriptions = tuple(f"B{i:02d}" for i in range(1, 13)) + ("B8A",)
    if not cog:
        return plain
    rasterio.shutil.copy(plain, path, driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=64)
    return path


def test_garbled_and_missing_tiles(tiny_model: Path, tmp_path: Path) -> None:
    garbled = _tiled(tmp_path / "g.tif")
    with rasterio.open(garbled) as src:
        offset = int(src.get_tag_item("BLOCK_OFFSET_1_1", "TIFF", bidx=1))
        size = int(src.get_tag_item("BLOCK_SIZE_1_1", "TIFF", bidx=1))
    raw = bytearray(garbled.read_bytes())
    raw[offset + 8 : offset + size - 8] = bytes(
        (b * 7 + 13) % 256 for b in raw[offset + 8 : offset + size - 8]
    )
    garbled.write_bytes(bytes(raw))
    cog = _tiled(tmp_path / "c.tif", cog=True)
    cog.write_bytes(cog.read_bytes()[: int(cog.stat().st_size * 0.6)])  # the last tiles missing
    for path in (garbled, cog):
        out = tmp_path / f"out_{path.stem}"
        code, stderr = cli(str(path), "--model", str(tiny_model), "--out", str(out), *ARGS)
        one_error(code, stderr, "is damaged or incomplete")
        assert "cannot be read at rows" in stderr and not out.exists()


# ---- NaN -------------------------------------------------------------------------------------

PATCH = (slice(None), slice(40, 44), slice(50, 54))


@pytest.mark.parametrize("variant", ["nodata 0", "nodata nan", "--nodata nan", "no nodata"])
def test_a_nan_patch_is_nodata(
    variant: str, make_scene: Callable[..., Path], tiny_model: Path, tmp_path: Path
) -> None:
    data = synthetic_s2((96, 128)).astype(np.float32)
    zeroed = data.copy()
    zeroed[PATCH] = 0
    data[PATCH] = np.nan
    names = None if variant == "no nodata" else tuple(f"B{i:02d}" for i in range(1, 13)) + ("B8A",)
    nodata = {"nodata 0": 0.0, "nodata nan": float("nan")}.get(variant)
    nan_scene = make_scene("nan.tif", data=data, nodata=nodata, descriptions=names)
    ref_scene = make_scene("zero.tif", data=zeroed, nodata=0, descriptions=names)
    config = CONFIG.replace(preview=False, bands="4,3,2" if names is None else None)
    nan_config = config.replace(nodata=float("nan")) if variant == "--nodata nan" else config
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NodataWarning)
        run_scene(nan_scene, tiny_model, tmp_path / "nan", nan_config)
    run_scene(ref_scene, tiny_model, tmp_path / "ref", config)
    for name in ("cam.tif", "classes.tif"):
        with (
            rasterio.open(tmp_path / "nan" / name) as a,
            rasterio.open(tmp_path / "ref" / name) as b,
        ):
            got, want = a.read(), b.read()
        np.testing.assert_array_equal(got, want)  # NaN where the patch is, equal elsewhere
    with rasterio.open(tmp_path / "nan/cam.tif") as r:
        nan_px = np.isnan(r.read(1))
    assert nan_px.sum() == 16 and nan_px[PATCH[1:]].all()
    run = (tmp_path / "nan/run.json").read_text()
    json.loads(run, parse_constant=lambda c: pytest.fail(f"run.json holds {c}"))  # strict JSON
    assert json.loads(run)["polygons"]["total"] > 0


def test_a_model_with_nan_weights_or_infinite_outputs_is_refused(
    scene: Path, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    net = build_net("geocam_tiny_resnet", 3, len(EUROSAT_CLASSES)).eval()
    with torch.no_grad():
        net.get_classifier().weight[0, 0] = float("nan")
    nan_model = tmp_path / "nan.safetensors"
    save_model(nan_model, net, tiny_card(), dtype=torch.float32)
    code, stderr = cli(str(scene), "--model", str(nan_model), "--out", str(tmp_path / "o"), *ARGS)
    one_error(code, stderr, "NaN or infinite weights")
    with torch.no_grad():
        net.get_classifier().weight.fill_(3e38)  # finite weights, CAMs overflow to inf
    big_model = tmp_path / "big.safetensors"
    save_model(big_model, net, tiny_card(), dtype=torch.float32)
    code, stderr = cli(str(scene), "--model", str(big_model), "--out", str(tmp_path / "o"), *ARGS)
    one_error(code, stderr, "gives NaN or infinite CAMs")
    assert not (tmp_path / "o").exists()


# ---- names, clashes, inputs inside --out -------------------------------------------------------


def _band_files(folder: Path, seed: int) -> None:
    folder.mkdir(parents=True)
    data = synthetic_s2((96, 128), seed)
    for band, index in (("B02", 1), ("B03", 2), ("B04", 3)):
        write_raster(folder / f"T33UUU_{band}.tif", data[index : index + 1], descriptions=None)


def test_clashing_scene_names_get_their_own_folders(tiny_model: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    _band_files(src / "a/IMG_DATA", 1)
    _band_files(src / "b/IMG_DATA", 2)
    inputs = [src / "a/IMG_DATA", src / "b/IMG_DATA"]
    for i, rel in enumerate(["c/scene.tif", "d/scene.tif", "x y.tif", "x_y.tif", "Up.tif", "up.tif",
                             "solo.tif"]):  # fmt: skip
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        inputs.append(write_raster(src / rel, synthetic_s2((96, 128), seed=10 + i)))
    args = ["--model", str(tiny_model), "--stride-px", "64", "--no-preview", "--threads", "1", "-q"]
    code, stderr = cli(*map(str, inputs), "--out", str(tmp_path / "o1"), *args)
    assert code == 0, stderr
    folders = sorted(p.name for p in (tmp_path / "o1").iterdir())
    assert len(folders) == len(inputs) and "solo" in folders
    assert sum(f.startswith("IMG_DATA-") for f in folders) == 2
    assert stderr.count("shares its name") == len(inputs) - 1
    for folder in folders:
        run = json.loads((tmp_path / "o1" / folder / "run.json").read_text())
        assert Path(run["out_dir"]).name == folder
        given = {str(Path(p).resolve()) for p in run["scene"]["paths"]}
        assert len(given) in (1, 3)  # each scene's own files (three band files for a product)
    # Input order does not change the names.
    code, stderr = cli(*map(str, reversed(inputs)), "--out", str(tmp_path / "o2"), *args)
    assert code == 0, stderr
    assert sorted(p.name for p in (tmp_path / "o2").iterdir()) == folders


def test_an_input_where_an_output_goes_is_refused(
    scene: Path, tiny_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    inside = str(shutil.copy(scene, out / "cam.tif"))
    digest = hashlib.sha256(Path(inside).read_bytes()).hexdigest()
    code, stderr = cli(inside, "--model", str(tiny_model), "--out", str(out), *ARGS)
    one_error(code, stderr, "lies where this run writes its outputs")
    # several scenes: one scene's input is another scene's output
    (out / "scene").mkdir()
    other = str(shutil.copy(scene, out / "scene" / "classes.tif"))
    code, stderr = cli(str(scene), other, "--model", str(tiny_model), "--out", str(out), *ARGS)
    one_error(code, stderr, "lies where this run writes its outputs")
    assert hashlib.sha256(Path(inside).read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in out.rglob("*")) == ["cam.tif", "classes.tif", "scene"]


# ---- reruns, stale staging folders, determinism --------------------------------------------


def test_rerun_without_preview_leaves_no_old_preview(
    scene: Path, tiny_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run_scene(scene, tiny_model, out, CONFIG)
    (out / "cam.tif.aux.xml").write_text("<PAMDataset/>")  # e.g. QGIS statistics of cam.tif
    run_scene(scene, tiny_model, out, CONFIG.replace(preview=False))
    assert not (out / "preview.png").exists() and not (out / "cam.tif.aux.xml").exists()
    assert "preview.png" not in complete_set(out)


def test_stale_staging_folders_are_removed_live_ones_kept(
    scene: Path, tiny_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    (out / f"{STAGING_PREFIX}dead").mkdir(parents=True)
    (out / f"{STAGING_PREFIX}dead" / "work_heat.tif").write_bytes(b"x" * 100)
    live = out / f"{STAGING_PREFIX}live"
    live.mkdir()
    fd = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a run in progress holds it
        run_scene(scene, tiny_model, out, CONFIG.replace(preview=False))
        assert not (out / f"{STAGING_PREFIX}dead").exists() and live.exists()
    finally:
        os.close(fd)
    run_scene(scene, tiny_model, out, CONFIG.replace(preview=False))
    assert not live.exists()


def test_two_runs_give_the_same_bytes(
    scene: Path, tiny_model: Path, reference: Path, tmp_path: Path
) -> None:
    run_scene(scene, tiny_model, tmp_path / "again", CONFIG)
    assert digests(tmp_path / "again") == digests(reference / "clean")
    with sqlite3.connect(tmp_path / "again/salient.gpkg") as db:
        assert db.execute("SELECT last_change FROM gpkg_contents").fetchone()[0].startswith("1970")


# ---- preflight -------------------------------------------------------------------------------


def test_a_runaway_scene_is_refused_before_any_work(tiny_model: Path, tmp_path: Path) -> None:
    big = tmp_path / "big.tif"
    with rasterio.open(
        big, "w", driver="GTiff", count=3, height=200_000, width=200_000, dtype="uint16",
        crs="EPSG:32633", transform=rasterio.Affine(10, 0, 330000, 0, -10, 5822040), tiled=True,
        blockxsize=512, blockysize=512, compress="deflate", sparse_ok=True, BIGTIFF="YES", nodata=0,
    ) as dst:  # fmt: skip
        dst.descriptions = ("B04", "B03", "B02")
    out = tmp_path / "out"
    code, stderr = cli(str(big), "--model", str(tiny_model), "--out", str(out), "-q")
    one_error(code, stderr, "needs 39,050,001 windows")
    assert "--max-windows 39050001" in stderr and not out.exists()


def test_memory_and_disk_limits(
    scene: Path, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    code, stderr = cli(str(scene), "--model", str(tiny_model), "--out", str(out), *ARGS,
                       "--max-memory-mib", "1")  # fmt: skip
    one_error(code, stderr, "MiB of memory")
    assert "--max-memory-mib" in stderr and not out.exists()
    monkeypatch.setattr(preflight, "free_mib", lambda folder: 0.01)
    with pytest.warns(DiskSpaceWarning, match="may need up to"):
        run_scene(scene, tiny_model, out, CONFIG.replace(preview=False))


# ---- the smaller cases -----------------------------------------------------------------------


def test_small_cases(scene: Path, tiny_model: Path, tmp_path: Path) -> None:
    one_band = write_raster(
        tmp_path / "b4.tif", synthetic_s2((96, 128))[3:4], descriptions=("B04",)
    )
    code, stderr = cli(
        str(one_band), "--model", str(tiny_model), "--out", str(tmp_path / "o"), "-q"
    )
    one_error(code, stderr, "has 1 band(s)")
    assert "--bands" not in stderr  # no mapping can work
    code, stderr = cli(str(scene), "--model", str(tiny_model.parent), "--out", str(tmp_path / "o"))
    one_error(code, stderr, "is a folder")
    code, stderr = cli(str(scene), "--model", str(tiny_model), "--out", str(tmp_path / "o"),
                       "--bands", "B04=4,B03=3,B02=2,B08=8")  # fmt: skip
    one_error(code, stderr, "maps band(s) B08 that the model does not use")
    assert not (tmp_path / "o").exists()


def test_the_error_after_a_progress_bar_has_its_own_line(tiny_model: Path, tmp_path: Path) -> None:
    empty = write_raster(tmp_path / "e.tif", np.zeros((13, 96, 128), np.uint16), nodata=0)
    code, stderr = cli(str(empty), "--model", str(tiny_model), "--out", str(tmp_path / "o"))
    assert code == 2 and "windows" in stderr  # the bar was drawn
    assert "\ngeocam: error: scene 'e' has no window" in stderr


class Pickled:
    """An object only full unpickling could rebuild."""


def test_pickled_checkpoints_are_refused_without_unpickling(tmp_path: Path) -> None:
    from test_data import write_rgb_tree

    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "extra": Pickled()}, evil)
    with pytest.raises(ModelFormatError, match="never unpickles") as err:
        resolve_init_weights(str(evil), download=False)
    assert "weights_only=False" not in str(err.value)
    write_rgb_tree(tmp_path / "rgb", per_class=1)
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    shutil.copy(evil, out / "checkpoints" / "last.ckpt")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("architecture: resnet18\nbatch_size: 8\nnum_workers: 0\nthreads: 1\nseed: 0\n")
    result = CliRunner().invoke(main, ["train", "--config", str(cfg), "--root", str(tmp_path / "rgb"),
                                       "--out", str(out), "--resume", "--precision", "fp32"])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "never unpickles" in result.output and "weights_only=False" not in result.output
    # nothing this failed run made is left: no train.log, no logs/
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints"]
    fresh = tmp_path / "fresh"
    result = CliRunner().invoke(main, ["train", "--config", str(cfg), "--root", str(tmp_path / "rgb"),
                                       "--out", str(fresh), "--epochs", "0"])  # fmt: skip
    assert result.exit_code == 2 and "`epochs`=0" in result.output
    assert not fresh.exists()
