"""Helpers shared by the test modules: CLI runs, output sets and their digests, one-line errors,
batches of scenes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from click.testing import CliRunner
from PIL import Image
from rasterio.transform import from_origin

from geocam import SceneConfig
from geocam.batch import MANIFEST_NAME
from geocam.cli import main
from geocam.cli.logs import RUN_LOG
from geocam.model import EUROSAT_CLASSES
from geocam.outputs import STAGING_PREFIX

TESTS = Path(__file__).parent
DRIVER = TESTS / "fault_driver.py"
ARGS = ["--stride-px", "16", "--batch-size", "4", "--threads", "1", "--precision", "fp32", "-q"]
CONFIG = SceneConfig(stride_px=16, batch_size=4, threads=1, precision="fp32")
#: Files whose bytes differ between runs by design (timings, process ids, modification times):
#: run.json, and the batch manifest the CLI keeps beside a single scene's outputs.
VOLATILE = {"run.json", MANIFEST_NAME, RUN_LOG}
#: Options of the batch tests' runs.
OPTIONS = ["--stride-px", "32", "--threads", "1", "--precision", "fp32", "--block-px", "64"]
OLD = SceneConfig(stride_px=32, threads=1, precision="fp32", threshold=0.3, preview=False)


def digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (relative POSIX path) but :data:`VOLATILE`."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in VOLATILE
    }


def complete_set(folder: Path) -> dict[str, str]:
    """The output set in ``folder``, checked complete: run.json's manifest lists every file."""
    files = json.loads((folder / "run.json").read_text())["files"]
    found = digests(folder)
    assert found == {name: entry["sha256"] for name, entry in files.items()}
    assert not list(folder.glob(STAGING_PREFIX + "*"))
    return found


def cli(*args: str) -> tuple[int, str]:
    """``geocam run ARGS`` in this process: (exit code, stderr)."""
    result = CliRunner().invoke(main, ["run", *args])
    return result.exit_code, result.stderr


def cli_output(*args: str) -> tuple[int, str]:
    """``geocam run ARGS`` in this process: (exit code, stdout and stderr)."""
    result = CliRunner().invoke(main, ["run", *args])
    return result.exit_code, result.output


def batch_scenes(make_scene: Callable[..., Path]) -> list[Path]:
    """Three scenes: two overlapping ones in EPSG:32633 and one in EPSG:32632."""
    return [
        make_scene("s1.tif", seed=1),
        make_scene("s2.tif", seed=2, transform=Affine(10, 0, 330960, 0, -10, 5821720)),
        make_scene("s3.tif", seed=3, crs="EPSG:32632"),
    ]


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


def old_set(reference: Path, out: Path) -> dict[str, str]:
    shutil.copytree(reference / "old", out)
    return complete_set(out)


#: The real data beside the checkout (tests that use it skip without it).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write_rgb_tree(root: Path, per_class: int = 2, seed: int = 0) -> list[str]:
    """A tiny EuroSAT RGB ImageFolder of seeded random 64x64 JPEGs; returns relative names."""
    rng = np.random.default_rng(seed)
    names = []
    for c in EUROSAT_CLASSES:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rel = f"{c}/{c}_{i + 1}.jpg"
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / rel)
            names.append(rel)
    return names


def write_ms_root(root: Path, per_class: int = 2, seed: int = 0) -> None:
    """A TorchGeo ``EuroSAT`` root: 13-band uint16 tiles plus eurosat-{split}.txt files."""
    rng = np.random.default_rng(seed)
    base = root / "ds/images/remote_sensing/otherDatasets/sentinel_2/tif"
    names = []
    for c in EUROSAT_CLASSES:
        (base / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            name = f"{c}_{i + 1}.tif"
            data = rng.integers(0, 4000, (13, 64, 64), dtype=np.uint16)
            with rasterio.open(
                base / c / name,
                "w",
                driver="GTiff",
                width=64,
                height=64,
                count=13,
                dtype="uint16",
                crs="EPSG:32633",
                transform=from_origin(500000, 5800000, 10, 10),
            ) as dst:
                dst.write(data)
            names.append(name)
    for split in ("train", "val", "test"):
        (root / f"eurosat-{split}.txt").write_text("\n".join(names) + "\n")


def build_real_ms_root(dst: Path) -> int:
    """TorchGeo-layout root from the 270 real EuroSAT MS tiles in ../shared (symlinks)."""
    src = SHARED_DATA / "eurosat-ms"
    base = dst / "ds/images/remote_sensing/otherDatasets/sentinel_2/tif"
    rows = [line.split(",") for line in (src / "manifest.csv").read_text().splitlines()[1:]]
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for i, (rel, _cls, subset) in enumerate(rows):
        (base / Path(rel).parent).mkdir(parents=True, exist_ok=True)
        (base / rel).symlink_to((src / rel).resolve())
        split = "test" if subset == "test" else ("val" if i % 5 == 0 else "train")
        splits[split].append(Path(rel).name)
    for split, names in splits.items():
        (dst / f"eurosat-{split}.txt").write_text("\n".join(names) + "\n")
    return len(rows)
