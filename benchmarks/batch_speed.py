"""A batch of 8 scenes: one process, `--scheduler local:1` and `--scheduler local:2`.

The 8 scenes are Havel and variants (same georeferencing, different pixels): by default the two
768 x 768 halves of the full Havel scene, each as it is, flipped left-right, up-down and both;
``--size full``: the whole 768 x 1536 scene as it is and with its columns rolled by 64 px, each
flipped the same 4 ways; ``--size sample``: the same with the bundled 384 x 512 crop. Each mode runs ``geocam run`` in a new process
(interpreter start, imports and model load included), with ``--threads`` torch threads per
scene (1), into a fresh folder, and reports: wall time, scenes/min, windows/s (windows scored /
wall), the scenes' own run time (the manifest's ``seconds``, summed), the peak RSS of each
process that ran scenes (the manifest's ``process.peak_rss_mib``), and the Dask overhead against
the sequential run (wall difference, as a share and per task). The start and close of a
LocalCluster are measured apart (``cluster_s``: start, register the worker plugin, close).
Outputs of all modes are compared by SHA-256 (every file but run.json and the manifest).

    .venv/bin/python benchmarks/batch_speed.py                  # 8 half-Havel scenes
    .venv/bin/python benchmarks/batch_speed.py --size sample    # 8 sample-crop scenes, quicker
"""

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[1]
HAVEL = ROOT.parent / "shared/data/scenes/havel_s2l1c_20170216_13band_eurosat_order_10m.tif"
SAMPLE = ROOT / "data/sample/havel_crop.tif"
MODEL = ROOT / "data/models/geocam-resnet50-eurosat-rgb.safetensors"
VOLATILE = {"run.json", "geocam-batch.json", "geocam.log"}


def make_scenes(folder: Path, size: str) -> list[Path]:
    """Write the 8 scenes; return their paths."""
    with rasterio.open(SAMPLE if size == "sample" else HAVEL) as src:
        data, profile = src.read(), src.profile
        descriptions = src.descriptions
    flips = [lambda a: a, lambda a: a[:, :, ::-1], lambda a: a[:, ::-1, :],
             lambda a: a[:, ::-1, ::-1]]  # fmt: skip
    if size == "half":
        bases = [data[:, :, :768], data[:, :, 768:]]
    else:  # the scene as it is and its columns rolled by 64 px
        bases = [data, np.roll(data, 64, axis=2)]
    paths = []
    for b, base in enumerate(bases):
        for f, flip in enumerate(flips):
            arr = np.ascontiguousarray(flip(base))
            path = folder / f"havel_{size}_{b}{f}.tif"
            prof = {**profile, "height": arr.shape[1], "width": arr.shape[2], "driver": "GTiff"}
            with rasterio.open(path, "w", **prof) as dst:
                dst.write(arr)
                for i, d in enumerate(descriptions, start=1):
                    if d:
                        dst.set_band_description(i, d)
            paths.append(path)
    return paths


def digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in VOLATILE
    }


def run_mode(scenes: list[Path], out: Path, threads: int, scheduler: str | None) -> dict:
    geocam = Path(sys.executable).with_name("geocam")
    cmd = [str(geocam), "run", *map(str, scenes), "--model", str(MODEL), "--out", str(out),
           "--threads", str(threads), "--force", "-q"]  # fmt: skip
    if scheduler:
        cmd += ["--scheduler", scheduler]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    entries = json.loads((out / "geocam-batch.json").read_text())["scenes"].values()
    windows = sum(e["windows"] for e in entries)
    rss: dict[int, float] = {}
    for e in entries:
        pid, peak = e["process"]["pid"], e["process"]["peak_rss_mib"] or 0.0
        rss[pid] = max(rss.get(pid, 0.0), peak)
    return {
        "mode": scheduler or "sequential",
        "wall_s": round(wall, 2),
        "scenes_per_min": round(len(entries) / wall * 60, 2),
        "windows": windows,
        "windows_per_s": round(windows / wall, 1),
        "scene_s_sum": round(sum(e["seconds"] for e in entries), 2),
        "model_s_sum": round(sum(e["model_seconds"] for e in entries), 2),
        "peak_rss_mib_per_process": sorted(rss.values()),
        "model_loads_max": max(e["process"]["model_loads"] for e in entries),
    }


def cluster_seconds(threads: int) -> float:
    """Seconds to start a LocalCluster of one worker, register the plugin and close it."""
    from geocam.distributed import connect, plan_cluster

    start = time.perf_counter()
    with connect(plan_cluster("local:1", threads)):
        pass
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["half", "full", "sample"], default="half")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, help="Folder for scenes and outputs [a temp dir].")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="geocam-batch-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    scenes = make_scenes(work, args.size)
    results = []
    for scheduler in (None, "local:1", "local:2"):
        out = work / (scheduler or "sequential").replace(":", "")
        results.append(run_mode(scenes, out, args.threads, scheduler))
        print(json.dumps(results[-1]), flush=True)
    seq = results[0]
    same = {r["mode"]: digests(work / r["mode"].replace(":", "")) == digests(work / "sequential")
            for r in results[1:]}  # fmt: skip
    for r in results[1:]:
        extra = r["wall_s"] - seq["wall_s"]
        r["overhead_vs_sequential_pct"] = round(100 * extra / seq["wall_s"], 1)
        r["overhead_per_task_s"] = round(extra / len(scenes), 2)
        r["speedup_vs_sequential"] = round(seq["wall_s"] / r["wall_s"], 3)
    summary = {
        "scenes": len(scenes),
        "size": args.size,
        "threads_per_scene": args.threads,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "load_avg_at_end": os.getloadavg(),
        "cluster_s": round(cluster_seconds(args.threads), 2),
        "outputs_identical_to_sequential": same,
        "results": results,
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
