"""geocam exact and dense against the usual approach, on one scene, in one run.

Runs, each in its own process (each reports its own peak RSS, Linux ``VmHWM``), on the same scene, window and stride:

1. peer: TorchGeo RasterDataset + GriddedPatchSampler + DataLoader + pytorch-grad-cam GradCAM on
   ResNet50 layer4, averaged into a scene array, written with rasterio (``peer_gradcam.py``);
2. ``geocam run --mode exact``;
3. ``geocam run --mode dense``;

then, in this process, the model stage alone on the same batches (the run's blocks with the
context each engine reads, the scene rendered in memory, engine only) for exact and dense. Prints, for each: windows/s and the ratio to the peer, both
over the run (from model load to the last output written, as each reports it: ``wall_s`` of
the peer, ``timings_s.total + timings_s.load_model`` of ``run.json``) and over the whole process (interpreter start and
imports included: about 2 s for torch alone here); peak RSS; the share of the run in the model;
the run's time / the model-alone time; and dense-vs-exact agreement (share of pixels with the
same winning class; Pearson correlation of the winning class's CAM).

    .venv/bin/python benchmarks/scene_speed.py --threads 2           # Havel, 64 px, stride 32
    .venv/bin/python benchmarks/scene_speed.py --model runs/seamless/model.safetensors --skip-peer

Each is run ``--repeat`` times (3), interleaved; the table gives the medians.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch

ROOT = Path(__file__).resolve().parents[1]
HAVEL = ROOT.parent / "shared/data/scenes/havel_s2l1c_20170216_13band_eurosat_order_10m.tif"
MODEL = ROOT / "data/models/geocam-resnet50-eurosat-rgb.safetensors"


def run_child(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Run a command; return (wall s, stdout).

    Peak RSS comes from each program's own report (``VmHWM``), not from ``wait4``: a child's
    ``ru_maxrss`` starts at this (large) process's peak.
    """
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, env=env, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, proc.stdout


def model_alone(
    scene: Path, mode: str, window_px: int, stride_px: int, model_path: Path = MODEL
) -> tuple[int, float]:
    """Seconds the engine alone takes on the run's batches: the same blocks (each with the
    context its engine reads around it) and windows, the scene pre-rendered in memory."""
    from affine import Affine

    from geocam import allocator
    from geocam.cam import ExactEngine
    from geocam.cam.dense import DenseEngine
    from geocam.config import SceneConfig
    from geocam.io.bands import match_bands
    from geocam.io.reader import scene_radiometry
    from geocam.io.scene import open_scene
    from geocam.model import load_model
    from geocam.pipeline.model_pass import _region
    from geocam.render import render
    from geocam.runtime import compute_dtype, resolve_precision
    from geocam.tiling import grid_offsets, iter_blocks

    precision = resolve_precision("auto", torch.device("cpu"))  # as the runs pick it
    model = load_model(model_path, dtype=compute_dtype(precision))
    opened = open_scene([scene])
    bands = match_bands(opened, model.card.bands, None)
    radiometry = scene_radiometry(
        opened, bands, level=None, reflectance_scale=None, dn_offset_declared=False,
        l2a_path_radiance=True, check=True,
    )  # fmt: skip
    with rasterio.open(scene) as src:
        dn = src.read([i + 1 for i in bands.indexes]).astype(np.float32)
    image = render(dn, np.ones(dn.shape[1:], bool), model.card, radiometry, bands.indexes)
    height, width = dn.shape[1:]
    rows, cols = grid_offsets(height, width, window_px, stride_px, "torchgeo")
    pad = 256  # more than any block's overhang and context
    image = np.pad(image, ((0, 0), (pad, pad), (pad, pad)))
    config = SceneConfig()
    engine = (
        ExactEngine(model.net, batch_size=config.batch_size)
        if mode == "exact"
        else DenseEngine(model.net)
    )
    context_px = getattr(engine, "context_px", 0)
    batches = []  # (block image, window origins in it), as the run gives them to the engine
    for block in iter_blocks(height, width, config.block_px, rows, cols, window_px,
                             Affine.identity()):  # fmt: skip
        region = _region(block, block.tiles, window_px, context_px)
        r0, c0 = int(region.row_off), int(region.col_off)
        view = image[
            :, r0 + pad : r0 + pad + int(region.height), c0 + pad : c0 + pad + int(region.width)
        ]
        batches.append((view, [(t.row_off - r0, t.col_off - c0) for t in block.tiles]))
    allocator.for_model()  # as `geocam run` does for its model stage
    start = time.perf_counter()
    n = sum(
        len(s.probs) for view, origins in batches for s in engine.score(view, origins, window_px)
    )
    return n, time.perf_counter() - start


def agreement(exact_dir: Path, dense_dir: Path) -> tuple[float, float, float]:
    """Share of pixels with the same class, the winning class's CAM correlation, and the share
    with the same class among salient pixels (exact's winning-class heat >= 0.5)."""
    with (
        rasterio.open(exact_dir / "classes.tif") as a,
        rasterio.open(dense_dir / "classes.tif") as b,
    ):
        ca, cb = a.read(1), b.read(1)
    with rasterio.open(exact_dir / "cam.tif") as a, rasterio.open(dense_dir / "cam.tif") as b:
        ha, hb = a.read(), b.read()
    valid = (ca != 255) & (cb != 255)
    same = float((ca[valid] == cb[valid]).mean())
    pick = np.where(ca == 255, 0, ca)[None].astype(np.intp)
    va = np.take_along_axis(ha, pick, 0)[0][valid]
    vb = np.take_along_axis(hb, pick, 0)[0][valid]
    ok = np.isfinite(va) & np.isfinite(vb)
    salient = va >= 0.5
    same_salient = float((ca[valid][salient] == cb[valid][salient]).mean())
    return same, float(np.corrcoef(va[ok], vb[ok])[0, 1]), same_salient


def grid_index(cam_path: Path, period_px: int) -> tuple[float, float]:
    """How strongly a stitched ``cam.tif`` shows the window grid, and the noise floor.

    The per-pixel maximum over classes, averaged by pixel phase (row and column mod the
    stride): the profile's spread over the image's (0: no grid). The floor is the same at a
    period that does not divide the grid (``../shared/tools/grid_artifact.py`` computes the same).
    """
    with rasterio.open(cam_path) as src:
        heat = np.nanmax(src.read().astype(np.float64), axis=0)
    ok = np.isfinite(heat)
    spread = float(np.std(heat[ok]))
    rows, cols = np.mgrid[0 : heat.shape[0], 0 : heat.shape[1]]
    out = []
    for p in (period_px, period_px + 7):
        phase = ((rows % p) * p + (cols % p))[ok]
        sums = np.bincount(phase, weights=heat[ok], minlength=p * p)
        profile = sums / np.maximum(np.bincount(phase, minlength=p * p), 1)
        out.append(float(np.std(profile)) / spread if spread > 0 else 0.0)
    return out[0], out[1]


def _same_windows(args: argparse.Namespace) -> list[str]:
    """The options that give every approach the same windows and threads."""
    return ["--window-px", str(args.window_px), "--stride-px", str(args.stride_px),
            "--threads", str(args.threads)]  # fmt: skip


def run_peer(args: argparse.Namespace, work: Path, env: dict[str, str]) -> dict[str, float]:
    """One run of the peer; its figures."""
    wall, out = run_child(
        [
            sys.executable,
            str(ROOT / "benchmarks/peer_gradcam.py"),
            str(args.scene),
            "--model",
            str(args.model),
            "--out",
            str(work / "peer.tif"),
            *_same_windows(args),
        ],
        env,
    )
    rec = json.loads(out.strip().splitlines()[-1])
    return {
        "windows": rec["windows"],
        "process_s": wall,
        "run_s": rec["wall_s"],
        "model_s": rec["model_s"],
        "rss_mib": rec["peak_rss_mib"] or float("nan"),  # None: not Linux
    }


def run_geocam(
    args: argparse.Namespace, out_dir: Path, mode: str, env: dict[str, str]
) -> dict[str, float]:
    """One ``geocam run`` and one model-alone timing of a mode; their figures."""
    wall, _ = run_child(
        [
            str(Path(sys.executable).parent / "geocam"),
            "run",
            str(args.scene),
            "--model",
            str(args.model),
            "--out",
            str(out_dir),
            "--mode",
            mode,
            *_same_windows(args),
            "--force",  # each repeat runs: the folder's manifest would skip a current scene
            "-q",
        ],
        env,
    )
    run = json.loads((out_dir / "run.json").read_text())
    n_alone, alone_s = model_alone(args.scene, mode, args.window_px, args.stride_px, args.model)
    return {
        **{f"t_{k}": v for k, v in run["timings_s"].items()},  # the run's stages
        "windows": run["windows"]["scored"],
        "process_s": wall,
        "run_s": run["timings_s"]["total"] + run["timings_s"]["load_model"],
        "model_s": run["timings_s"]["model"],
        "rss_mib": run["peak_rss_mib"] or float("nan"),
        "alone_s": alone_s,
        "alone_windows": n_alone,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", type=Path, default=HAVEL)
    parser.add_argument("--model", type=Path, default=MODEL, help="a candidate model file")
    parser.add_argument("--window-px", type=int, default=64)
    parser.add_argument("--stride-px", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--keep", type=Path, help="keep outputs in this folder")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; medians are printed")
    args = parser.parse_args()
    if not args.scene.is_file():
        sys.exit(f"scene {args.scene} not found (needs ../shared or --scene)")
    torch.set_num_threads(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    work = args.keep or Path(tempfile.mkdtemp(prefix="geocam-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{args.threads} threads, torch {torch.__version__}"
    )
    print(f"scene: {args.scene.name}, window {args.window_px} px, stride {args.stride_px} px")
    runs: dict[str, list[dict[str, float]]] = {}
    for rep in range(args.repeat):  # interleaved, so that drifts in the machine hit all alike
        if not args.skip_peer:
            runs.setdefault("peer", []).append(run_peer(args, work, env))
        for mode in ("exact", "dense"):
            runs.setdefault(mode, []).append(run_geocam(args, work / mode, mode, env))
        print(f"repeat {rep + 1}/{args.repeat}: " + ", ".join(
            f"{name} {r[-1]['run_s']:.2f} s" for name, r in runs.items()
        ), flush=True)  # fmt: skip
    results = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
               for name, rs in runs.items()}  # fmt: skip
    peer = results.get("peer")
    print(f"medians of {args.repeat} run(s) each:")
    print(
        f"{'approach':8} {'windows':>7} {'run s':>6} {'win/s':>6} {'x peer':>6} {'process s':>9} "
        f"{'win/s':>6} {'x peer':>6} {'peak RSS':>9} {'model %':>7} {'run/alone':>9}"
    )
    for name, r in results.items():
        rate_run, rate_proc = r["windows"] / r["run_s"], r["windows"] / r["process_s"]
        x_run = f"{rate_run / (peer['windows'] / peer['run_s']):6.1f}" if peer else "     -"
        x_proc = f"{rate_proc / (peer['windows'] / peer['process_s']):6.1f}" if peer else "     -"
        alone = f"{r['run_s'] / r['alone_s']:9.2f}" if "alone_s" in r else "        -"
        print(
            f"{name:8} {int(r['windows']):7d} {r['run_s']:6.2f} {rate_run:6.1f} {x_run} "
            f"{r['process_s']:9.2f} {rate_proc:6.1f} {x_proc} {r['rss_mib']:5.0f} MiB "
            f"{100 * r['model_s'] / r['run_s']:6.0f}% {alone}"
        )
    for mode in ("exact", "dense"):
        r = results[mode]
        print(
            f"{mode} model alone: {r['alone_s']:.2f} s, {r['alone_windows'] / r['alone_s']:.0f} windows/s"
        )
        stages = {k[2:]: v for k, v in r.items() if k.startswith("t_")}
        print(f"{mode} run stages (run.json timings_s, s): "
              + ", ".join(f"{k} {v:.2f}" for k, v in sorted(stages.items(), key=lambda kv: -kv[1])))  # fmt: skip
    same, corr, same_salient = agreement(work / "exact", work / "dense")
    print(
        f"dense vs exact: same winning class on {100 * same:.1f}% of pixels "
        f"({100 * same_salient:.1f}% where exact's winning-class heat >= 0.5); "
        f"winning-class CAM correlation {corr:.3f}"
    )
    grids = {
        mode: grid_index(work / mode / "cam.tif", args.stride_px) for mode in ("exact", "dense")
    }
    print("grid index (window grid in cam.tif, 0 = none; noise floor): " + ", ".join(
        f"{mode} {g:.3f} ({floor:.3f})" for mode, (g, floor) in grids.items()
    ))  # fmt: skip
    print(f"outputs in {work}")


if __name__ == "__main__":
    main()
