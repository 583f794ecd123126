"""geocam on every real scene in ../shared/data/scenes: water IoU, class mix, seconds, per model.

For each scene and each model (the bundled one, the bundled one before it in git history, and
any ``--model`` given), in one run: ``geocam.run_scene`` with default settings, then

- water IoU of the class map (River + SeaLake) against the scene's own water, NDWI =
  (B03 - B08) / (B03 + B08) > 0.1 on reflectance (the scene's offset and scale removed, as
  geocam decides them), over valid pixels; precision and recall;
- the share of valid pixels per class (and the largest);
- seconds (model load apart), or the one-line refusal for scenes the model cannot read.

``--l2a-path`` adds runs with ``l2a_path_radiance`` off (label ``-path``; on by default); ``--rgb8`` adds 8-bit
true-colour renderings of each scene (``rgb8-eurosat``: EuroSAT's 0-2750 stretch;
``rgb8-eob``: EO Browser's default, reflectance x 2.5), scored against the scene's own water.

    .venv/bin/python benchmarks/real_scenes.py --threads 2
    .venv/bin/python benchmarks/real_scenes.py --model runs/radiometric/model.safetensors

Skips (exit 0) without ../shared. Results go in benchmarks/README.md.
"""

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
SCENES = ROOT.parent / "shared/data/scenes"
MODEL = ROOT / "data/models/geocam-resnet50-eurosat-rgb.safetensors"
WATER = ("River", "SeaLake")


def previous_model(out: Path) -> Path | None:
    """The bundled model file as it was before its newest version (git history), or None."""
    rel = MODEL.relative_to(ROOT)
    current = subprocess.run(
        ["git", "hash-object", str(MODEL)], cwd=ROOT, capture_output=True, check=False, text=True
    ).stdout.strip()
    revs = subprocess.run(
        ["git", "log", "--format=%H", "--", str(rel)],
        cwd=ROOT,
        capture_output=True,
        check=False,
        text=True,
    ).stdout.split()
    for rev in revs:
        blob = subprocess.run(
            ["git", "rev-parse", f"{rev}:{rel}"],
            cwd=ROOT,
            capture_output=True,
            check=False,
            text=True,
        ).stdout.strip()
        if blob and blob != current:
            data = subprocess.run(
                ["git", "cat-file", "blob", blob], cwd=ROOT, capture_output=True, check=False
            )
            out.write_bytes(data.stdout)
            return out
    return None


def rgb8_rendering(scene_path: Path, out: Path, full_scale_dn: float) -> Path | None:
    """An 8-bit true-colour GeoTIFF of the scene (no band names), or None without B02-B04."""
    from geocam.errors import BandError
    from geocam.io.bands import match_bands
    from geocam.io.reader import SceneReader, scene_radiometry
    from geocam.io.scene import open_scene

    scene = open_scene([scene_path])
    try:
        match = match_bands(scene, ("B04", "B03", "B02"), None)
    except BandError:
        return None
    radiometry = scene_radiometry(scene, match, l2a_path_radiance=False, check=False)
    with SceneReader(scene, match.indexes) as reader:
        dn, valid = reader.read(Window(0, 0, scene.width, scene.height))
    rgb = np.clip(radiometry.to_dn10k(dn, match.indexes) / full_scale_dn * 255, 1, 255)
    rgb = np.where(valid, rgb, 0).astype(np.uint8)
    profile = {"driver": "GTiff", "count": 3, "dtype": "uint8", "nodata": 0, "crs": scene.crs,
               "transform": scene.transform, "width": scene.width, "height": scene.height}  # fmt: skip
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(rgb)
    return out


def water_truth(scene_path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(NDWI > 0.1, valid) on the scene grid from its B03 and B08 reflectance, or None."""
    from geocam.io.bands import match_bands
    from geocam.io.reader import SceneReader, scene_radiometry
    from geocam.io.scene import open_scene

    scene = open_scene([scene_path])
    from geocam.errors import BandError

    try:
        match = match_bands(scene, ("B03", "B08"), None)
    except BandError:
        return None
    radiometry = scene_radiometry(scene, match, l2a_path_radiance=False, check=False)
    with SceneReader(scene, match.indexes) as reader:
        dn, valid = reader.read(Window(0, 0, scene.width, scene.height))
    green, nir = radiometry.to_dn10k(dn, match.indexes)
    ndwi = (green - nir) / np.maximum(green + nir, 1e-6)
    return (ndwi > 0.1) & valid, valid


def score(
    scene_path: Path, truth_path: Path, model: Path, out: Path, threads: int, **options: object
) -> dict:
    """Run one scene with one model and measure it against the water of ``truth_path``."""
    import warnings

    import geocam
    from geocam.errors import GeocamError

    start = time.perf_counter()
    config = geocam.SceneConfig(threads=threads, preview=False).replace(**options)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = geocam.run_scene(scene_path, model, out, config)
    except GeocamError as err:
        return {"refused": str(err)}
    seconds = time.perf_counter() - start
    record = json.loads((out / "run.json").read_text())
    fractions = record["class_fraction"]
    row: dict = {
        "seconds": round(seconds, 1),
        "windows": result.windows,
        "fractions": fractions,
        "top": max(fractions.items(), key=lambda kv: kv[1]),
        "ground": record["scene"]["ground"]["how"],
        "radiometry": record["scene"]["radiometry"]["scale_source"],
        "level": record["scene"]["radiometry"]["level"],
    }
    truth = water_truth(truth_path)
    if truth is not None:
        water, valid = truth
        names = record["model"]["classes"]
        with rasterio.open(out / "classes.tif") as src:
            classes = src.read(1)
        pred = np.isin(classes, [names.index(w) for w in WATER]) & valid
        inter, union = int((pred & water).sum()), int((pred | water).sum())
        row.update(
            iou=round(inter / union, 3) if union else None,
            precision=round(inter / max(int(pred.sum()), 1), 3),
            recall=round(inter / max(int(water.sum()), 1), 3),
            water_share=round(float(water.sum()) / max(int(valid.sum()), 1), 4),
        )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", type=Path, default=[], help="extra model(s)")
    ap.add_argument("--no-previous", action="store_true", help="skip the previous model")
    ap.add_argument("--scenes", type=Path, default=SCENES)
    ap.add_argument("--l2a-path", action="store_true", help="also with l2a_path_radiance off")
    ap.add_argument("--rgb8", action="store_true", help="also 8-bit renderings of each scene")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    if not args.scenes.is_dir():
        print(f"skipped: {args.scenes} not found (real scenes live in ../shared)")
        return
    import torch

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="geocam-real-"))
    models = {"bundled": MODEL}
    if not args.no_previous:
        prev = previous_model(work / "previous.safetensors")
        if prev is not None:
            models["previous"] = prev
    for extra in args.model:
        models[extra.stem if extra.stem not in models else str(extra)] = extra
    for label, path in models.items():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        print(f"model {label}: {path} (sha256 {digest})")
    scenes = [(p, p) for p in sorted(args.scenes.iterdir()) if p.suffix == ".tif"]
    if args.rgb8:
        for scene, _ in list(scenes):
            for label, full_scale in (("eurosat", 2750.0), ("eob", 4000.0)):
                out = work / f"{scene.stem}.rgb8-{label}.tif"
                if rgb8_rendering(scene, out, full_scale) is not None:
                    scenes.append((out, scene))
    variants = {"": {}, "-path": {"l2a_path_radiance": False}} if args.l2a_path else {"": {}}
    results: dict = {}
    print(f"\n{'scene':<40} {'model':<10} {'IoU':>6} {'prec':>6} {'rec':>6} "
          f"{'top class':<26} {'s':>6}  notes")  # fmt: skip
    runs = [(m, v) for m in models for v in variants]
    for scene, truth in scenes:
        for model_label, variant in runs:
            label = model_label + variant
            base = results.get(scene.name, {}).get(model_label, {})
            if variant and base.get("level") != "L2A":
                continue  # the variant changes L2A scenes only
            out = work / f"{scene.stem}-{label}"
            row = score(scene, truth, models[model_label], out, args.threads, **variants[variant])
            results.setdefault(scene.name, {})[label] = row
            if "refused" in row:
                print(f"{scene.stem[-40:]:<40} {label:<10} refused: {row['refused'][:150]}")
                continue
            top = f"{row['top'][0]} {row['top'][1]:.1%}"
            iou = f"{row['iou']:.3f}" if row.get("iou") is not None else "-"
            prec = f"{row['precision']:.3f}" if "precision" in row else "-"
            rec = f"{row['recall']:.3f}" if "recall" in row else "-"
            print(f"{scene.stem[-40:]:<40} {label:<10} {iou:>6} {prec:>6} {rec:>6} {top:<26} "
                  f"{row['seconds']:>6.1f}  {row['level']}, {row['ground']}")  # fmt: skip
    print("\nclass fractions (% of valid pixels):")
    for scene, per_model in results.items():
        for label, row in per_model.items():
            if "fractions" in row:
                mix = ", ".join(f"{k} {v:.1%}" for k, v in row["fractions"].items() if v >= 0.005)
                print(f"  {scene[-40:]:<40} {label:<10} {mix}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
