"""Peak memory of `geocam run` on a big synthetic scene next to the Havel scene.

Streaming by blocks must keep peak memory independent of the scene size: an 8000 x 8000 px,
13-band scene should run within 1.1x (10 %) the peak RSS of the 1536 x 768 Havel scene. Each run is a
separate `geocam run` process; its peak RSS is the ``peak_rss_mib`` its run.json records
(Linux ``VmHWM``, the process's own, in MiB).

The synthetic scene is the Havel scene mirrored and repeated to 8000 x 8000 px (real content,
so the model and the polygons see realistic data), uint16, 13 bands with band names, tiled
GeoTIFF in EPSG:32633. Both runs use the bundled ResNet50 with the same settings, by default
those of the acceptance (64 px windows at stride 32: 62,001 windows on the big scene, about 2
minutes on 2 cores; ``--stride-px 64`` runs a quarter of them).

    .venv/bin/python benchmarks/memory_scene.py [--size 8000] [--stride-px 32] [--threads 2] [--mode dense]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

REPO = Path(__file__).resolve().parents[1]
HAVEL = REPO.parent / "shared/data/scenes/havel_s2l1c_20170216_13band_eurosat_order_10m.tif"
MODEL = REPO / "data/models/geocam-resnet50-eurosat-rgb.safetensors"
GEOCAM = Path(sys.executable).with_name("geocam")


def make_big_scene(path: Path, size: int) -> None:
    """Write a size x size, 13-band scene by mirroring the Havel scene, block by block."""
    with rasterio.open(HAVEL) as src:
        havel = src.read()
        profile = src.profile.copy()
        descriptions = src.descriptions
    # mirrored tile (2h x 2w) so that repeats are seamless
    tile = np.concatenate([havel, havel[:, ::-1]], axis=1)
    tile = np.concatenate([tile, tile[:, :, ::-1]], axis=2)
    th, tw = tile.shape[1:]
    profile.update(height=size, width=size, tiled=True, blockxsize=512, blockysize=512,
                   compress="zstd", zstd_level=1, interleave="band", bigtiff="YES")  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        for i, text in enumerate(descriptions, start=1):
            dst.set_band_description(i, text)
        step = 1024
        for r0 in range(0, size, step):
            rows = np.arange(r0, min(r0 + step, size)) % th
            strip = tile[:, rows]
            for c0 in range(0, size, step):
                cols = np.arange(c0, min(c0 + step, size)) % tw
                dst.write(strip[:, :, cols], window=Window(c0, r0, len(cols), len(rows)))


def run(scene: Path, out: Path, args: argparse.Namespace) -> dict[str, object]:
    cmd = [str(GEOCAM), "run", str(scene), "--model", str(args.model), "--out", str(out),
           "--stride-px", str(args.stride_px), "--threads", str(args.threads),
           "--mode", args.mode, "--force", "-q"]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, _ = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stdout = proc.stdout.read().decode() if proc.stdout else ""
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{stdout}\n{stderr}")
    record = json.loads((out / "run.json").read_text())
    with rasterio.open(scene) as src:
        shape = (src.height, src.width, src.count)
    return {
        "scene": scene.name,
        "mode": args.mode,
        "shape_rows_cols_bands": shape,
        "windows": record["windows"]["scored"],
        "wall_s": round(wall, 1),
        "model_s": record["timings_s"]["model"],
        "windows_per_s_model": record["windows"]["per_second_model"],
        "peak_rss_mib": record["peak_rss_mib"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8000, help="synthetic scene edge in px")
    parser.add_argument("--stride-px", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mode", choices=("exact", "dense"), default="exact")
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--workdir", type=Path, default=None, help="keep files here")
    args = parser.parse_args()
    if not HAVEL.exists() or not args.model.exists():
        raise SystemExit(f"needs {HAVEL} and {args.model}")
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp_str:
        tmp = Path(tmp_str)
        big = tmp / f"synthetic_{args.size}x{args.size}_13band.tif"
        t0 = time.perf_counter()
        make_big_scene(big, args.size)
        print(
            f"made {big.name} ({big.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.0f} s"
        )
        small = run(HAVEL, tmp / "out_havel", args)
        print(json.dumps(small))
        large = run(big, tmp / "out_big", args)
        print(json.dumps(large))
    ratio = large["peak_rss_mib"] / small["peak_rss_mib"]  # type: ignore[operator]
    print(
        f"peak RSS: {small['shape_rows_cols_bands']} {small['peak_rss_mib']} MiB, "
        f"{large['shape_rows_cols_bands']} {large['peak_rss_mib']} MiB, ratio {ratio:.3f} "
        f"({'within' if ratio <= 1.1 else 'ABOVE'} 1.1x)"
    )


if __name__ == "__main__":
    main()
