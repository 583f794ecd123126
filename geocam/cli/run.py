"""``geocam run``: score scenes and write their CAM heat layers, class map and polygons."""

from __future__ import annotations

import functools
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..config import SceneConfig
from ..terminal import INTERRUPTS, c_stderr_aside
from .base import fail_cleanly, main, show_warning, verbosity
from .logs import RUN_LOG, command_line, configure_logging, drop_run_log, log_failure
from .options import config_file, config_options, given, quiet

if TYPE_CHECKING:
    from ..batch import Manifest, SceneJob
    from ..distributed import ClusterPlan

log = logging.getLogger("geocam")


@main.command(short_help="Score scenes: CAM heat layers, class map, polygons, preview.")
@click.argument("scene", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--model", "model_path", required=True, type=click.Path(path_type=Path),
              help="geocam model (.safetensors).")  # fmt: skip
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Output folder (one sub-folder per scene when several are given).")  # fmt: skip
@config_file
@config_options(SceneConfig)
@click.option("--scheduler",
              help="Run on Dask: local, local:N (N worker processes), tcp://HOST:PORT or a "
                   "scheduler file (.json) [one process, no Dask].")  # fmt: skip
@click.option("--force", is_flag=True,
              help="Redo scenes that the output folder's manifest has as complete and current.")  # fmt: skip
@click.option("--chunk-px", type=click.IntRange(min=1),
              help="With --scheduler: score each scene's windows in chunks of this edge (a "
                   "multiple of --block-px) on the workers [one task per scene].")  # fmt: skip
@quiet
@fail_cleanly
def run(
    scene: tuple[Path, ...],
    model_path: Path,
    out_dir: Path,
    config_path: Path | None,
    scheduler: str | None,
    force: bool,
    chunk_px: int | None,
    quiet: bool,
    **options: Any,  # noqa: ANN401
) -> None:
    """Score SCENE (GeoTIFFs, Sentinel-2 band files or product folders) with a geocam model.

    Writes cam.tif, classes.tif, salient.gpkg, salient.geojson, preview.png, run.json, QGIS styles
    (.qml) and a QGIS project (project.qgs) to --out; several scenes go to --out/NAME, with one
    project, VRT mosaics and one GeoPackage for them all in --out. The manifest in --out
    (geocam-batch.json) makes a rerun skip the scenes that are complete and current; the run
    log goes to --out/geocam.log.
    """
    import warnings

    from .. import __version__
    from ..config import load_config

    warnings.showwarning = show_warning
    config = (load_config(config_path) if config_path else SceneConfig()).replace(**given(options))
    level = verbosity(quiet)
    made = not out_dir.exists()
    log_file = _open_run_log(out_dir)
    reconfigure = functools.partial(configure_logging, level, log_file)
    reconfigure()
    log.info("geocam %s: %s", __version__, command_line())
    try:
        with c_stderr_aside(level, reconfigure):
            _run_scenes(scene, model_path, out_dir, config, quiet, scheduler, force, chunk_px)
    except BaseException as err:
        log_failure(err)
        drop_run_log(out_dir, made and log_file is not None, level)
        raise


def _open_run_log(out_dir: Path) -> Path | None:
    """The run log in ``out_dir``, created with the folder; None where it cannot be written.

    An unwritable ``--out`` is the library's to report (one line, exit 2), so the log is
    simply left out here.
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / RUN_LOG, "a"):
            pass
    except OSError:
        return None
    return out_dir / RUN_LOG


def _run_scenes(
    scene: tuple[Path, ...],
    model_path: Path,
    out_dir: Path,
    config: SceneConfig,
    quiet: bool,
    scheduler: str | None,
    force: bool,
    chunk_px: int | None,
) -> None:
    from ..batch import Manifest, run_scene_job, scene_jobs
    from ..model import file_sha256, read_card
    from ..outputs import recover
    from ..pipeline import iter_scene_inputs, load_run_model, plan_scenes
    from ..runtime import MALLOC_TUNING, configure_process

    plan = None
    if chunk_px and not scheduler:
        raise click.BadParameter("needs --scheduler", param_hint="--chunk-px")
    if chunk_px:
        from ..chunks import check_chunk_px

        check_chunk_px(chunk_px, config.block_px)
    if scheduler:
        from ..distributed import plan_cluster

        plan = plan_cluster(scheduler, config.threads)
        config = config.replace(threads=plan.threads)
    else:
        configure_process(None)  # one malloc arena, before the run's threads start
    scenes = list(iter_scene_inputs(scene))
    if plan is None:
        model = load_run_model(model_path, config)
        card, model_sha256 = model.card, model.sha256
    else:
        card = read_card(model_path)  # a bad model file stops here, not on the workers
        model_sha256 = file_sha256(model_path)
    # Every scene is checked (inputs, bands, grid, limits, output clashes) before any work.
    folders = plan_scenes(scenes, card, config, out_dir)
    if len(scenes) > 1:
        recover(out_dir)  # staging folders a single-scene run into --out left behind
    jobs = scene_jobs(scenes, folders)
    for job in jobs:
        log.info("scene %s (%s) -> %s", job.name, ", ".join(map(str, job.paths)), job.out_dir)
    manifest = Manifest.open(out_dir, model_sha256, config)
    todo = []
    for job in jobs:
        if not force and manifest.is_current(job):
            click.echo(f"{job.name}: skipped, complete and current (in {manifest.path}; "
                       "--force redoes it)")  # fmt: skip
        else:
            todo.append(job)
    if plan is None:
        for job in todo:
            bars = _SceneBars(job.name, quiet)
            try:
                record = run_scene_job(
                    job, model, config, on_event=bars, guard=INTERRUPTS.held, hooks=MALLOC_TUNING
                )
            finally:
                bars.close()  # ends the bar's line: a message after it starts on its own
            manifest.record(record)
            click.echo(_summary(job.name, record.outputs))
            INTERRUPTS.check()  # one that came while the scene finished: that scene is complete
    elif todo and chunk_px:
        configure_process(None)  # the client runs each scene's pass 2
        _run_chunked(_DaskBatch(plan, todo, model_path, config, manifest, quiet), chunk_px)
    elif todo:
        _run_on_dask(_DaskBatch(plan, todo, model_path, config, manifest, quiet), len(jobs))
    if len(jobs) > 1:
        _write_batch(out_dir, [manifest.outputs(job) for job in jobs])


class _SceneBars:
    """Progress bars of one scene's stages."""

    def __init__(self, name: str, quiet: bool) -> None:
        self.name, self.quiet = name, quiet
        self.stage = ""
        self.bar: Any = None

    def __call__(self, event: Any) -> None:  # noqa: ANN401 - a geocam.pipeline.Progress
        from tqdm import tqdm

        if event.stage != self.stage:
            self.stage = event.stage
            self.close()
            if not self.quiet:
                self.bar = tqdm(total=event.total, desc=f"{self.name} {event.stage}",
                                unit=event.stage.rstrip("s"), file=sys.stderr,
                                dynamic_ncols=True)  # fmt: skip
        if self.bar is not None:
            self.bar.update(event.done - self.bar.n)
        INTERRUPTS.check()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _summary(name: str, result: Any) -> str:  # noqa: ANN401 - a geocam.pipeline.SceneOutputs
    rate = result.windows / result.model_seconds if result.model_seconds else 0.0
    return (
        f"{name}: {result.windows} windows "
        f"({result.windows_skipped} skipped as nodata), {result.polygons} polygons in "
        f"{result.seconds:.1f} s ({rate:.0f} windows/s in the model)\nOutputs in "
        f"{result.out_dir}/: " + ", ".join(p.name for p in result.files.values())
    )


def _dask_logging() -> None:
    """Dask's loggers have their own handler at INFO; -vv shows their records."""
    verbose = verbosity()
    logging.getLogger("distributed").setLevel(logging.INFO if verbose >= 2 else logging.WARNING)


@dataclass(frozen=True, slots=True)
class _DaskBatch:
    """What both Dask paths need: the cluster, the scenes to do, the model and settings."""

    plan: ClusterPlan
    todo: list[SceneJob]
    model_path: Path
    config: SceneConfig
    manifest: Manifest
    quiet: bool


def _run_on_dask(batch: _DaskBatch, total: int) -> None:
    """Run scenes on Dask; a batch bar (scenes done, windows/s) fed by the workers' results."""
    import time

    from tqdm import tqdm

    from ..distributed import connect, run_batch

    _dask_logging()
    with connect(batch.plan) as client:
        start, windows = time.perf_counter(), 0
        bar = tqdm(total=total, initial=total - len(batch.todo), desc="batch", unit="scene",
                   file=sys.stderr, dynamic_ncols=True, disable=batch.quiet)  # fmt: skip
        try:
            for record in run_batch(client, batch.todo, batch.model_path, batch.config):
                batch.manifest.record(record)
                windows += record.outputs.windows
                rate = windows / max(time.perf_counter() - start, 1e-9)
                bar.set_postfix_str(f"{rate:.0f} windows/s", refresh=False)
                bar.update(1)
                bar.write(_summary(record.job.name, record.outputs), file=sys.stdout)
        finally:
            bar.close()


def _run_chunked(batch: _DaskBatch, chunk_px: int) -> None:
    """Each scene's windows scored in chunks on Dask; its lattice, pass 2 and outputs here."""
    from tqdm import tqdm

    from ..batch import run_scene_job
    from ..chunks import ReplayEngine
    from ..distributed import connect, score_chunks
    from ..pipeline import load_run_model
    from ..runtime import MALLOC_TUNING

    _dask_logging()
    model = load_run_model(batch.model_path, batch.config)  # the engine's head and pass 2 run here
    with connect(batch.plan) as client:
        for job in batch.todo:
            chunks: list[Any] = []
            bar = tqdm(desc=f"{job.name} chunks", unit="chunk", file=sys.stderr,
                       dynamic_ncols=True, disable=batch.quiet)  # fmt: skip
            try:
                for scores in score_chunks(client, job, batch.model_path, batch.config, chunk_px):
                    chunks.append(scores)
                    bar.update(1)
            finally:
                bar.close()
            bars = _SceneBars(job.name, batch.quiet)
            try:
                record = run_scene_job(job, model, batch.config, on_event=bars,
                                       wrap_engine=functools.partial(ReplayEngine, chunks=chunks),
                                       hooks=MALLOC_TUNING)  # fmt: skip
            finally:
                bars.close()
            batch.manifest.record(record)
            click.echo(_summary(job.name, record.outputs))


def _write_batch(out_dir: Path, runs: list[Any]) -> None:
    """The batch's QGIS project, VRT mosaics (one pair per CRS) and merged GeoPackage."""
    from ..mosaic import write_batch_polygons, write_mosaics
    from ..pipeline import write_batch_project

    click.echo(f"QGIS project of all scenes: {write_batch_project(out_dir, runs)}")
    vrts = write_mosaics(out_dir, runs)
    gpkg = write_batch_polygons(out_dir, runs)
    click.echo(
        "Mosaics: " + ", ".join(p.name for p in vrts) + (f"; polygons: {gpkg.name}" if gpkg else "")
    )
