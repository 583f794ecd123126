"""Hostile inputs: damaged tiles, NaN, broken models, clashing names, runaway scenes, and more.

Each gives a correct result or a one-line message with exit 2 and nothing written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
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
from helpers import ARGS, CONFIG, cli, one_error

from geocam import preflight, run_scene
from geocam.cli import main
from geocam.cli.logs import RUN_LOG
from geocam.errors import DiskSpaceWarning, ModelFormatError, NodataWarning
from geocam.model import EUROSAT_CLASSES, build_net, resolve_init_weights, save_model

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
    folders = sorted(p.name for p in (tmp_path / "o1").iterdir() if p.is_dir())
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
    assert sorted(p.name for p in (tmp_path / "o2").iterdir() if p.is_dir()) == folders


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
    left = sorted(p.name for p in out.rglob("*") if p.name != RUN_LOG)  # the log records it
    assert left == ["cam.tif", "classes.tif", "scene"]


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
    from helpers import write_rgb_tree

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
    assert result.exit_code == 2 and "'--epochs': 0 is not in the range x>=1" in result.output
    assert not fresh.exists()
