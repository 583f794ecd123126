"""The outputs of a scene from the passes' work files: COGs, vectors, preview, QGIS files."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import array_bounds

from ..colours import class_colours
from ..io.raster import write_category_names, write_cog
from ..io.vectors import polygons_frame, write_geojson, write_gpkg, write_text
from ..polygonize import (
    SalientPolygon,
    merge_pieces,
)
from ..preview import PreviewGrid, write_scene_preview
from ..project import SceneLayers, project_xml
from ..styles import cam_qml, classes_qml, salient_qml
from .job import Job, SceneOutputs
from .names import OUTPUT_NAMES
from .raster_pass import Rasters

log = logging.getLogger(__name__)


def _write_cogs(
    heat: Path,
    classes: Path,
    tmp: Path,
    names: Sequence[str],
    overviews: bool,
    gdal_env: Mapping[str, Any],
) -> float:
    """Write the heat and class COGs from their work files; return the seconds taken."""
    start = time.perf_counter()
    with rasterio.Env(**dict(gdal_env)):  # GDAL settings are per thread
        write_cog(heat, tmp / OUTPUT_NAMES["cam"], "heat-cog", overviews)
        write_cog(classes, tmp / OUTPUT_NAMES["classes"], "class-cog", overviews)
    write_category_names(tmp / OUTPUT_NAMES["classes"], names)
    return time.perf_counter() - start


def write_outputs(
    job: Job, rasters: Rasters, preview: PreviewGrid
) -> tuple[list[SalientPolygon], SceneLayers]:
    """Write the COGs, the polygons, the preview and the QGIS styles and project.

    Returns:
        The polygons, and what the project shows.

    The COGs (GDAL, multi-threaded, without the GIL) are written in the background while the
    polygons merge and the vectors and preview are written.
    """
    scene, config, timer, names, tmp = job.plan.scene, job.config, job.timer, job.names, job.tmp
    provenance, colours = job.provenance, class_colours(names)
    t = time.perf_counter()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="geocam-cog") as cog_thread:
        cogs = cog_thread.submit(
            _write_cogs,
            rasters.heat_vrt,
            job.work("cls"),
            tmp,
            names,
            config.overviews,
            config.gdal_env,
        )
        tolerance = config.simplify_px * min(scene.res_xy)
        polygons: list[SalientPolygon] = []
        for c, class_pieces in enumerate(rasters.pieces):
            polygons.extend(merge_pieces(class_pieces, c, names[c], scene.crs, tolerance))
        rasters.pieces.clear()
        job.hooks.release()  # the pieces' memory, scattered through the heap
        t = timer.add("merge", t)
        frame = polygons_frame(polygons, scene.crs)
        polygon_style = salient_qml(names, colours)
        write_gpkg(
            frame,
            tmp / OUTPUT_NAMES["gpkg"],
            metadata=provenance.items(),
            description=f"geocam salient polygons of {scene.name} ({provenance.summary()})",
            style_qml=polygon_style,
            date=provenance.gpkg_date,
        )
        write_geojson(frame, tmp / OUTPUT_NAMES["geojson"])
        del frame
        job.hooks.release()
        t = timer.add("vectors", t)
        preview_extent = None
        if config.preview:
            path = tmp / OUTPUT_NAMES["preview"]
            preview_extent = write_scene_preview(
                path, scene, job.plan.bands, job.model, job.radiometry, preview
            )
            t = timer.add("preview", t)
        layers = _scene_layers(job, rasters, preview_extent)
        write_text(tmp / OUTPUT_NAMES["classes_style"], classes_qml(names, colours))
        write_text(tmp / OUTPUT_NAMES["cam_style"], cam_qml(layers.heat_band))
        write_text(tmp / OUTPUT_NAMES["salient_style"], polygon_style)
        project = project_xml(
            [layers],
            title=f"geocam: {scene.name}",
            created=provenance.iso_date.rstrip("Z"),
            abstract=provenance.summary(),
        )
        write_text(tmp / OUTPUT_NAMES["project"], project)
        timer.seconds["cog"] = cogs.result()  # in the background; the wait is "cog_wait"
        timer.add("cog_wait", t)
    log.info(
        "scene %s outputs staged: %d polygons, COGs %.2f s",
        scene.name,
        len(polygons),
        timer.seconds["cog"],
    )
    return polygons, layers


def _scene_layers(
    job: Job, rasters: Rasters, preview_extent: tuple[float, float, float, float] | None
) -> SceneLayers:
    """What the project shows: the heat of the class covering most of the scene, ticked."""
    scene, names = job.plan.scene, job.names
    counts = rasters.class_pixels[: len(names)]
    epsg = scene.crs.to_epsg()
    return SceneLayers(
        name=scene.name,
        folder=".",
        crs_wkt=scene.crs.to_wkt(),
        crs_authid=f"EPSG:{epsg}" if epsg else None,
        extent=array_bounds(*scene.shape_rc, scene.transform),  # (west, south, east, north)
        classes=tuple(names),
        colours=tuple(class_colours(names)),
        heat_band=int(np.argmax(counts)) + 1 if counts.any() else 1,
        preview=OUTPUT_NAMES["preview"] if preview_extent is not None else None,
        preview_extent=preview_extent,
    )


def write_batch_project(out_dir: Path, runs: Sequence[SceneOutputs]) -> Path:
    """Write one QGIS project (``project.qgs`` in ``out_dir``) showing every scene of a batch.

    Each scene gets its group, with paths relative to ``out_dir``; the project takes the first
    scene's CRS. The file is written under a temporary name and renamed.

    Args:
        out_dir: the batch's output folder, holding the scenes' folders.
        runs: the scene runs.

    Returns:
        The project's path.

    Raises:
        ValueError: no run has a project description.
    """
    scenes = []
    for run in runs:
        if run.layers is not None:
            folder = Path(os.path.relpath(run.out_dir, out_dir)).as_posix()
            scenes.append(replace(run.layers, folder=folder))
    if not scenes:
        raise ValueError("no scene run to put in a project")
    path = Path(out_dir) / OUTPUT_NAMES["project"]
    text = project_xml(
        scenes,
        title=f"geocam batch: {len(scenes)} scenes",
        created="",
        abstract="; ".join(s.name for s in scenes),
    )
    tmp = path.with_name(f".{path.name}.tmp")
    write_text(tmp, text)
    os.replace(tmp, path)
    return path
