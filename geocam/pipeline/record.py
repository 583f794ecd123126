"""The run's record (run.json): inputs, parameters, counts, timings, versions."""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict
from importlib import metadata
from typing import Any

import rasterio
import torch

from ..config import to_mapping
from ..polygonize import (
    SalientPolygon,
)
from .job import Job
from .model_pass import WindowCounts
from .names import OUTPUT_NAMES
from .raster_pass import Rasters

log = logging.getLogger(__name__)


def peak_rss_mib() -> float | None:
    """This process's peak resident memory so far, in MiB (None where it cannot be read).

    Linux's ``VmHWM`` belongs to the program's own address space. ``getrusage``'s ``ru_maxrss``
    does not: a child inherits its parent's peak at fork, so a large parent masks its child's.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def versions() -> dict[str, str]:
    """Versions of Python, GDAL and the packages that shape the outputs."""
    out = {"python": platform.python_version(), "gdal": rasterio.__gdal_version__}
    for pkg in (
        "geocam",
        "torch",
        "timm",
        "torchgeo",
        "rasterio",
        "numpy",
        "shapely",
        "pyproj",
        "geopandas",
        "pyogrio",
    ):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def record_run(
    job: Job, counts: WindowCounts, rasters: Rasters, polygons: Sequence[SalientPolygon]
) -> dict[str, Any]:
    """The run's record (run.json): inputs, parameters, counts, timings."""
    scene, model, card, bands, config = (
        job.plan.scene,
        job.model,
        job.model.card,
        job.plan.bands,
        job.config,
    )
    engine, timer, names = job.engine, job.timer, job.names
    model_s = timer.seconds.get("model", 0.0)
    class_pixels = rasters.class_pixels
    valid_px = int(class_pixels[: len(names)].sum())
    record: dict[str, Any] = {
        "geocam": versions()["geocam"],
        "scene": {
            "name": scene.name,
            "paths": [str(p) for p in scene.paths],
            "crs": scene.crs.to_string(),
            "transform": list(scene.transform)[:6],
            "shape_rc": list(scene.shape_rc),
            "band_names": list(scene.band_names),
            "bands_used": {
                card.bands[i]: {"scene_band": pos + 1, "name": scene.bands[pos].name}
                for i, pos in enumerate(bands.indexes)
            },
            "band_match": bands.how,
            "nodata": scene.nodata,
            "nodata_source": scene.nodata_source,
            "dn_offset": scene.dn_offset,
            "dn_offset_source": scene.dn_offset_source,
            "radiometry": asdict(job.radiometry),
            "ground": asdict(job.plan.ground),
        },
        "model": {
            "sha256": model.sha256,
            "architecture": card.architecture,
            "classes": names,
            "bands": list(card.bands),
            "rendering": asdict(card.rendering),
            "window_px": card.window_px,
            "input_scale": card.input_scale,
            "metrics": dict(card.metrics),
        },
        "parameters": {
            **to_mapping(config),
            "window_px": job.plan.window_px,
            "stride_px": job.plan.stride_px,
            "engine": engine.name,
            "device": str(engine.device),
            "precision": engine.precision,
            "threads": torch.get_num_threads(),
        },
        "windows": {
            "total": len(job.plan.row_offsets) * len(job.plan.col_offsets),
            "scored": counts.scored,
            "skipped_nodata": counts.skipped,
            "per_second_model": round(counts.scored / model_s, 2) if model_s > 0 else None,
            "lattice_px": counts.lattice_px,
        },
        "blocks": -(-scene.height // config.block_px) * -(-scene.width // config.block_px),
        "scene_max_cam": {n: float(rasters.scene_max[i]) for i, n in enumerate(names)},
        "class_fraction": {
            n: round(float(class_pixels[i]) / max(valid_px, 1), 4) for i, n in enumerate(names)
        },
        "class_area_m2": {
            n: round(float(rasters.class_area_m2[i]), 1) for i, n in enumerate(names)
        },
        "polygons": {
            "total": len(polygons),
            "per_class": {n: sum(p.class_id == i for p in polygons) for i, n in enumerate(names)},
            "area_m2_per_class": {
                n: round(sum((p.area_m2 for p in polygons if p.class_id == i), 0.0), 1)
                for i, n in enumerate(names)
            },
            "rule": (
                f"relu(cam)/scene max >= {config.threshold} and (class wins or probability >= "
                f"{config.min_probability}); sieve {config.sieve_px} px; simplify "
                f"{config.simplify_px} px"
            ),
        },
        "timings_s": {k: round(v, 3) for k, v in timer.seconds.items()},
        "versions": versions(),
        "provenance": job.provenance.items(),
        "outputs": [n for k, n in OUTPUT_NAMES.items() if (job.tmp / n).exists() or k == "run"],
    }
    record["timings_s"].setdefault("model", 0.0)
    record["timings_s"]["total"] = round(time.perf_counter() - timer.start, 3)
    record["timings_s"]["load_model"] = round(model.load_s, 3)
    record["peak_rss_mib"] = peak_rss_mib()
    return record
