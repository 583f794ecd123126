"""run_scene(): plan every check, then the two passes and the outputs, committed at once.

:func:`iter_run_scene` plans the run (:mod:`.plan`: every check before any output exists) and
owns the temporary folder; ``_run`` chains :func:`~.model_pass.model_pass` (pass 1),
:func:`~.raster_pass.raster_pass` (pass 2), :func:`~.write.write_outputs` and
:func:`~.record.record_run`. The outputs are built in a temporary folder and moved into place with
``os.replace``: an error leaves no half-written output behind.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import rasterio

from ..cam import Engine, make_engine
from ..config import SceneConfig
from ..io.vectors import write_json
from ..model import GeocamModel
from ..outputs import OutputSet, io_errors, manifest
from ..preview import PreviewGrid
from ..project import SceneLayers
from ..provenance import Provenance, geocam_version, provenance_date
from ..runtime import NO_HOOKS, StageHooks, resolve_precision, torch_device, torch_threads
from .job import Job, Progress, SceneOutputs, Timer
from .model_pass import model_pass
from .names import OUTPUT_NAMES
from .plan import load_run_model, plan_run
from .raster_pass import raster_pass
from .record import record_run
from .write import write_outputs

log = logging.getLogger(__name__)


def run_scene(
    scene: Path | Sequence[Path],
    model: Path | GeocamModel,
    out_dir: Path,
    config: SceneConfig | None = None,
    name: str | None = None,
    hooks: StageHooks = NO_HOOKS,
) -> SceneOutputs:
    """Score a scene and write its CAM heat layers, class map, polygons, preview and run.json.

    Args:
        scene: a GeoTIFF, or the band files of one Sentinel-2 product.
        model: a geocam ``.safetensors`` model file, or a loaded model.
        out_dir: output folder (created if missing).
        config: run settings; defaults to :class:`SceneConfig`'s defaults.
        name: scene name for messages; default from the file names.
        hooks: the process owner's tuning, called as the stages start; none by default.

    Returns:
        The written files and counts.

    Raises:
        GeocamError: bad input (scene, bands, model, settings, output folder); nothing is left
            half-written.
    """
    gen = iter_run_scene(scene, model, out_dir, config, name, hooks=hooks)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            result: SceneOutputs = stop.value
            return result


def iter_run_scene(
    scene: Path | Sequence[Path],
    model: Path | GeocamModel,
    out_dir: Path,
    config: SceneConfig | None = None,
    name: str | None = None,
    wrap_engine: Callable[[Engine], Engine] | None = None,
    hooks: StageHooks = NO_HOOKS,
) -> Generator[Progress, None, SceneOutputs]:
    """Like :func:`run_scene`, yielding :class:`Progress` events; returns :class:`SceneOutputs`.

    Args:
        scene: a GeoTIFF, or the band files of one Sentinel-2 product.
        model: a geocam model file or a loaded model.
        out_dir: output folder.
        config: run settings.
        name: scene name.
        wrap_engine: replaces the engine the run built (e.g. with
            :class:`geocam.chunks.ReplayEngine`: scores computed by Dask workers).
        hooks: the process owner's tuning, called as the stages start (e.g.
            :data:`geocam.runtime.MALLOC_TUNING`); none by default.
    """
    config = config or SceneConfig()
    paths = (Path(scene),) if isinstance(scene, str | Path) else tuple(Path(p) for p in scene)
    out_dir = Path(out_dir)
    # Every check before anything is created.
    device = torch_device(config.device)
    precision = resolve_precision(config.precision, device)
    loaded = model if isinstance(model, GeocamModel) else load_run_model(Path(model), config)
    t_start = time.perf_counter()  # the model load is timed apart: one model serves many scenes
    plan, estimate = plan_run(paths, loaded.card, config, out_dir, name)
    opened = plan.scene
    engine_threads = config.threads or os.cpu_count() or 1
    engine = make_engine(
        config.mode, loaded.net, config.batch_size, device, precision, plan.ground.input_scale
    )
    if wrap_engine is not None:
        engine = wrap_engine(engine)
    provenance = Provenance(
        geocam_version(), loaded.sha256, opened.name, provenance_date(opened.paths)
    )
    with (
        OutputSet(out_dir, OUTPUT_NAMES.values()) as outputs,
        io_errors(out_dir, opened.name, estimate.disk_mib, outputs),
    ):
        with rasterio.Env(**dict(config.gdal_env)), torch_threads(engine_threads):
            timer = Timer(t_start)
            timer.add("setup", t_start)  # model load, scene open, engine
            job = Job(plan, loaded, engine, config, outputs.staging, timer, provenance, out_dir,
                      estimate, hooks)  # fmt: skip
            result, layers = yield from _run(job)
        installed = outputs.commit()
    log.info("scene %s: outputs committed to %s", opened.name, out_dir)
    files = {key: installed[fname] for key, fname in OUTPUT_NAMES.items() if fname in installed}
    return SceneOutputs(
        out_dir=out_dir,
        files=files,
        windows=result["windows"]["scored"],
        windows_skipped=result["windows"]["skipped_nodata"],
        seconds=time.perf_counter() - t_start,
        model_seconds=result["timings_s"]["model"],
        polygons=result["polygons"]["total"],
        layers=layers,
    )


def _run(job: Job) -> Generator[Progress, None, tuple[dict[str, Any], SceneLayers]]:
    preview = PreviewGrid.for_scene(job.plan.scene.shape_rc, job.config.preview_px)
    scored = yield from model_pass(job, preview)
    rasters = yield from raster_pass(job, scored.cells, preview)
    counts = scored.counts
    del scored  # the lattice is done with: its memory serves the polygons and vectors
    polygons, layers = write_outputs(job, rasters, preview)
    for work in (job.work("valid"), job.work("cls"), *rasters.heat_files):
        work.unlink(missing_ok=True)
    record = record_run(job, counts, rasters, polygons)
    record["out_dir"] = str(job.out_dir)
    record["preflight"] = {**asdict(job.estimate), "memory_mib": job.estimate.memory_mib}
    record["files"] = manifest(job.tmp, OUTPUT_NAMES.values())  # the completion marker's list
    write_json(record, job.tmp / OUTPUT_NAMES["run"])
    return record, layers
