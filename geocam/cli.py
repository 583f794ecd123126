"""geocam's command line: ``geocam run``, ``geocam train``, ``geocam evaluate``.

Commands only parse options, build a config, call one library function and exit. This module
owns logging and progress bars; the library stays silent. Errors from geocam exit with code 2
and a one-line message.
"""

from __future__ import annotations

import functools
import json
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .errors import GeocamError
from .terminal import INTERRUPTS, Terminated, c_stderr_aside

if TYPE_CHECKING:
    from .config import SceneConfig

log = logging.getLogger("geocam")


def configure_logging(verbosity: int, log_file: Path | None = None) -> None:
    """Send geocam's log records to stderr (and a file), at a level set by ``-v``."""
    level = logging.WARNING - 10 * verbosity
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(
        level=max(logging.DEBUG, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    # GDAL's warnings come through these loggers; a failing write adds some to geocam's error.
    for name in ("rasterio", "pyogrio"):
        logging.getLogger(name).setLevel(logging.ERROR if verbosity < 1 else logging.NOTSET)


def fail_cleanly[**P, R](fn: Callable[P, R]) -> Callable[P, R]:
    """Turn geocam errors into a one-line message and exit code 2, and signals into 128 + signal.

    Ctrl-C (SIGINT) and SIGTERM exit with 130 and 143, as shells and schedulers expect of an
    interrupted program, after a one-line message; the library has removed what it had staged.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except GeocamError as err:
            click.echo(f"geocam: error: {err}", err=True)
            sys.exit(2)
        except (KeyboardInterrupt, Terminated) as err:
            signum = signal.SIGTERM if isinstance(err, Terminated) else signal.SIGINT
            click.echo(
                f"geocam: error: interrupted by {signum.name}; nothing half-written is left "
                "(outputs of finished scenes are complete; rerun the command to finish)",
                err=True,
            )
            sys.exit(128 + signum)

    return wrapper


@click.group()
@click.version_option(package_name="geocam")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.pass_context
def main(ctx: click.Context, verbose: int) -> None:
    """Where a land-cover classifier sees each class across whole satellite scenes."""
    ctx.obj = {"verbose": verbose}
    configure_logging(verbose)
    # SIGTERM (a killed job, a scheduler's timeout) unwinds like Ctrl-C, so the library's
    # cleanup runs and no temporary output folder is left behind.
    INTERRUPTS.install()


# --------------------------------------------------------------------------------------------
# Scene runs (`geocam run`)
# --------------------------------------------------------------------------------------------


def _band_spec(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:  # noqa: ANN401
    from .config import BandSpec
    from .errors import ConfigError

    if value is None:
        return None
    try:
        return BandSpec.parse(value)
    except ConfigError as err:
        raise click.BadParameter(str(err), ctx=ctx, param=param) from err


def _dn_offset(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None or value.lower() == "auto":
        return None
    try:
        return float(value)
    except ValueError as err:
        raise click.BadParameter(f"{value!r} is neither 'auto' nor a number", ctx, param) from err


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    *args: Any,  # noqa: ANN401
    **kwargs: Any,  # noqa: ANN401
) -> None:
    click.echo(f"geocam: warning: {message}", err=True)


@main.command(short_help="Score scenes: CAM heat layers, class map, polygons, preview.")
@click.argument("scene", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--model", "model_path", required=True, type=click.Path(path_type=Path),
              help="geocam model (.safetensors).")  # fmt: skip
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Output folder (one sub-folder per scene when several are given).")  # fmt: skip
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="SceneConfig YAML (e.g. pipelines/scene_cam.yaml); options below override it.")  # fmt: skip
@click.option("--window-px", type=click.IntRange(min=1), help="Window edge in pixels [model's].")
@click.option("--stride-px", type=click.IntRange(min=1), help="Window step in pixels [window/2].")
@click.option("--grid", type=click.Choice(["torchgeo", "inward"]), help="Window layout [torchgeo].")
@click.option("--batch-size", type=click.IntRange(min=1), help="Windows per model call [64].")
@click.option("--bands", callback=_band_spec,
              help="Scene bands for the model's bands: B04=3,B03=2,B02=1 or 3,2,1 (1-based).")  # fmt: skip
@click.option("--device", help="torch device: auto, cpu, cuda, cuda:1 [auto: CUDA when present].")
@click.option("--threads", type=click.IntRange(min=1), help="torch threads [all cores].")
@click.option("--mode", type=click.Choice(["exact", "dense"]), help="Engine [exact].")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]),
              help="bf16, fp32, or auto (bf16 where native: AVX512-BF16, AMX, CUDA) [auto].")  # fmt: skip
@click.option("--reflectance-scale", type=click.FloatRange(min=0, min_open=True),
              help="Scene DNs are reflectance x this [from the scene, else 10000].")  # fmt: skip
@click.option("--level", type=click.Choice(["L1C", "L2A"], case_sensitive=False),
              callback=lambda ctx, param, v: v.upper() if v else None,
              help="Processing level [from product metadata, tags or names].")  # fmt: skip
@click.option("--l2a-path-radiance/--no-l2a-path-radiance", default=None,
              help="Add a typical path radiance to L2A scenes (L1C-like) [yes].")  # fmt: skip
@click.option("--radiometry-check/--no-radiometry-check", default=None,
              help="Refuse values that cannot be reflectance at the scale decided [yes].")  # fmt: skip
@click.option("--dn-offset", callback=_dn_offset,
              help="Added to DNs first: 'auto' (product metadata) or a number, e.g. -1000.")  # fmt: skip
@click.option("--nodata", type=float, help="Nodata DN [scene's; 0 for Sentinel-2].")
@click.option("--min-valid", "min_valid_fraction", type=click.FloatRange(0, 1),
              help="Skip windows with a smaller valid fraction [0.5].")  # fmt: skip
@click.option("--block-px", type=click.IntRange(min=1), help="Output block edge in pixels [512].")
@click.option("--threshold", type=click.FloatRange(0, 1),
              help="Polygons: min CAM / class scene max [0.5].")  # fmt: skip
@click.option("--min-probability", type=click.FloatRange(0, 1),
              help="Polygons: min probability where the class does not win [0.5].")  # fmt: skip
@click.option("--sieve-px", type=click.IntRange(min=0), help="Polygons: min area in px [16].")
@click.option("--simplify-px", type=click.FloatRange(min=0), help="Polygons: tolerance in px [1].")
@click.option("--preview/--no-preview", default=None, help="Write preview.png [yes].")
@click.option("--overviews/--no-overviews", default=None, help="COG overviews [yes].")
@click.option("--max-windows", type=click.IntRange(min=0),
              help="Refuse scenes with more windows (0: no limit) [2000000].")  # fmt: skip
@click.option("--max-memory-mib", type=click.IntRange(min=0),
              help="Refuse scenes whose lattice needs more MiB (0: no check) [available].")  # fmt: skip
@click.option("--scheduler",
              help="Run on Dask: local, local:N (N worker processes), tcp://HOST:PORT or a "
                   "scheduler file (.json) [one process, no Dask].")  # fmt: skip
@click.option("--force", is_flag=True,
              help="Redo scenes that the output folder's manifest has as complete and current.")  # fmt: skip
@click.option("--chunk-px", type=click.IntRange(min=1),
              help="With --scheduler: score each scene's windows in chunks of this edge (a "
                   "multiple of --block-px) on the workers [one task per scene].")  # fmt: skip
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
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
    (geocam-batch.json) makes a rerun skip the scenes that are complete and current.
    """
    import warnings

    from .config import SceneConfig, load_config

    warnings.showwarning = _show_warning
    config = (load_config(config_path) if config_path else SceneConfig()).replace(**options)
    verbose = click.get_current_context().find_root().obj["verbose"]
    with c_stderr_aside(verbose, functools.partial(configure_logging, verbose)):
        _run_scenes(scene, model_path, out_dir, config, quiet, scheduler, force, chunk_px)


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
    from .batch import Manifest, run_scene_job, scene_jobs
    from .model import file_sha256, read_card
    from .outputs import recover
    from .pipeline import iter_scene_inputs, load_run_model, plan_scenes
    from .runtime import MALLOC_TUNING, configure_process

    plan = None
    if chunk_px and not scheduler:
        raise click.BadParameter("needs --scheduler", param_hint="--chunk-px")
    if chunk_px:
        from .chunks import check_chunk_px

        check_chunk_px(chunk_px, config.block_px)
    if scheduler:
        from .distributed import plan_cluster

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
        _run_chunked(plan, todo, model_path, config, manifest, chunk_px, quiet)
    elif todo:
        _run_on_dask(plan, todo, model_path, config, manifest, len(jobs), quiet)
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
    verbose = (click.get_current_context().obj or {}).get("verbose", 0)
    logging.getLogger("distributed").setLevel(logging.INFO if verbose >= 2 else logging.WARNING)


def _run_on_dask(
    plan: Any,  # noqa: ANN401 - a geocam.distributed.ClusterPlan
    todo: list[Any],
    model_path: Path,
    config: Any,  # noqa: ANN401 - a SceneConfig
    manifest: Any,  # noqa: ANN401 - a geocam.batch.Manifest
    total: int,
    quiet: bool,
) -> None:
    """Run scenes on Dask; a batch bar (scenes done, windows/s) fed by the workers' results."""
    import time

    from tqdm import tqdm

    from .distributed import connect, run_batch

    _dask_logging()
    with connect(plan) as client:
        start, windows = time.perf_counter(), 0
        bar = tqdm(total=total, initial=total - len(todo), desc="batch", unit="scene",
                   file=sys.stderr, dynamic_ncols=True, disable=quiet)  # fmt: skip
        try:
            for record in run_batch(client, todo, model_path, config):
                manifest.record(record)
                windows += record.outputs.windows
                rate = windows / max(time.perf_counter() - start, 1e-9)
                bar.set_postfix_str(f"{rate:.0f} windows/s", refresh=False)
                bar.update(1)
                bar.write(_summary(record.job.name, record.outputs), file=sys.stdout)
        finally:
            bar.close()


def _run_chunked(
    plan: Any,  # noqa: ANN401 - a geocam.distributed.ClusterPlan
    todo: list[Any],
    model_path: Path,
    config: Any,  # noqa: ANN401 - a SceneConfig
    manifest: Any,  # noqa: ANN401 - a geocam.batch.Manifest
    chunk_px: int,
    quiet: bool,
) -> None:
    """Each scene's windows scored in chunks on Dask; its lattice, pass 2 and outputs here."""
    from tqdm import tqdm

    from .batch import run_scene_job
    from .chunks import ReplayEngine
    from .distributed import connect, score_chunks
    from .pipeline import load_run_model
    from .runtime import MALLOC_TUNING

    _dask_logging()
    model = load_run_model(model_path, config)  # the engine's head and pass 2 run here
    with connect(plan) as client:
        for job in todo:
            chunks: list[Any] = []
            bar = tqdm(desc=f"{job.name} chunks", unit="chunk", file=sys.stderr,
                       dynamic_ncols=True, disable=quiet)  # fmt: skip
            try:
                for scores in score_chunks(client, job, model_path, config, chunk_px):
                    chunks.append(scores)
                    bar.update(1)
            finally:
                bar.close()
            bars = _SceneBars(job.name, quiet)
            try:
                record = run_scene_job(job, model, config, on_event=bars,
                                       wrap_engine=functools.partial(ReplayEngine, chunks=chunks),
                                       hooks=MALLOC_TUNING)  # fmt: skip
            finally:
                bars.close()
            manifest.record(record)
            click.echo(_summary(job.name, record.outputs))


def _write_batch(out_dir: Path, runs: list[Any]) -> None:
    """The batch's QGIS project, VRT mosaics (one pair per CRS) and merged GeoPackage."""
    from .mosaic import write_batch_polygons, write_mosaics
    from .pipeline import write_batch_project

    click.echo(f"QGIS project of all scenes: {write_batch_project(out_dir, runs)}")
    vrts = write_mosaics(out_dir, runs)
    gpkg = write_batch_polygons(out_dir, runs)
    click.echo(
        "Mosaics: " + ", ".join(p.name for p in vrts) + (f"; polygons: {gpkg.name}" if gpkg else "")
    )


# --------------------------------------------------------------------------------------------
# Training and evaluation
# --------------------------------------------------------------------------------------------


def _split_bands(value: str | None) -> tuple[str, ...] | None:
    return tuple(b.strip().upper() for b in value.split(",") if b.strip()) if value else None


@main.command(short_help="Fine-tune a ResNet50 on EuroSAT and export a geocam model.")
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML with any of the options below (command-line values win).",
)
@click.option("--data", "source", type=click.Choice(["rgb", "ms"]), help="EuroSAT RGB JPEGs or MS.")
@click.option("--root", type=click.Path(path_type=Path), help="Dataset root.")
@click.option(
    "--split-dir",
    type=click.Path(path_type=Path),
    help="RGB: folder with train/validation/test .csv or .txt split files.",
)
@click.option("--bands", help="MS: comma-separated band subset, e.g. B04,B03,B02 (default all 13).")
@click.option("--init", help="none | imagenet | a torchgeo weight name | a local weights file.")
@click.option("--download/--no-download", default=None, help="Allow downloading --init weights.")
@click.option("--epochs", type=int)
@click.option("--batch-size", type=int)
@click.option("--lr", type=float, help="Peak AdamW learning rate.")
@click.option("--seed", type=int)
@click.option(
    "--context-weight",
    type=float,
    help="Weight of the mosaic loss that makes dense scene runs agree with exact ones (0: off).",
)
@click.option(
    "--consistency-weight",
    type=float,
    help="Weight of the loss matching mosaic (dense) CAMs to each window's own (exact) CAM.",
)
@click.option(
    "--radiometric",
    type=float,
    help="Share of training images given radiometric jitter (L2A-like, haze, gain, gamma; 0: off).",
)
@click.option("--workers", "num_workers", type=int, help="DataLoader workers.")
@click.option("--threads", type=int, help="torch CPU threads.")
@click.option("--precision", type=click.Choice(["auto", "bf16", "fp32"]))
@click.option("--accelerator", type=click.Choice(["auto", "cpu", "gpu"]))
@click.option("--limit-images", type=int, help="Keep a seeded random N images of each split.")
@click.option("--max-minutes", type=float, help="Stop training after this long, then export.")
@click.option(
    "--resume", is_flag=True, default=None, help="Continue from OUT/checkpoints/last.ckpt."
)
@click.option(
    "--out", "out_dir", type=click.Path(path_type=Path), help="Run folder (checkpoints, logs)."
)
@click.option("--model", "model_path", type=click.Path(path_type=Path), help="Output .safetensors.")
@click.pass_context
@fail_cleanly
def train(ctx: click.Context, /, config: Path | None, **options: Any) -> None:  # noqa: ANN401
    """Fine-tune through TorchGeo's tasks.Classification; checkpoint every epoch; export a model."""
    from .data import DataSpec, ms_spec, rgb_spec
    from .train import TrainConfig, command_line
    from .train import train as run_training

    settings: dict[str, Any] = {}
    if config is not None:
        import yaml

        settings.update(yaml.safe_load(config.read_text()) or {})
    settings.update({k: v for k, v in options.items() if v is not None})
    for key in ("root", "out_dir", "model_path", "split_dir"):
        if settings.get(key) is not None:
            settings[key] = Path(settings[key])
    missing = [k for k in ("root", "out_dir") if settings.get(k) is None]
    if missing:
        raise click.UsageError(f"missing {', '.join('--' + m.replace('_', '-') for m in missing)}")
    source = settings.pop("source", "rgb")
    bands = _split_bands(settings.pop("bands", None))
    root = settings.pop("root")
    split_dir = settings.pop("split_dir", None)
    spec: DataSpec = rgb_spec(root, split_dir) if source == "rgb" else ms_spec(root, bands)
    out_dir: Path = settings["out_dir"]
    settings.setdefault("model_path", out_dir / "model.safetensors")
    made = [p for p in (out_dir, out_dir / "train.log", out_dir / "logs") if not p.exists()]
    before = _checkpoints(out_dir)
    configure_logging(max(1, ctx.obj["verbose"]), out_dir / "train.log")
    try:
        cfg = TrainConfig(data=spec, command=command_line(), **settings)
        summary = run_training(cfg)
    except BaseException:
        _remove_unless_trained(out_dir, made, before)
        raise
    test = summary["test"]
    click.echo(
        f"model: {summary['model']}\nepochs: {summary['epochs']}  wall time: "
        f"{summary['wall_time_s']:.0f} s  test accuracy: {test['overall_accuracy']:.4f} "
        f"(n={test['n']})"
    )


def _checkpoints(out_dir: Path) -> dict[str, int]:
    """Checkpoint file names in a run folder with their modification times (ns)."""
    return {p.name: p.stat().st_mtime_ns for p in (out_dir / "checkpoints").glob("*.ckpt")}


def _remove_unless_trained(out_dir: Path, made: list[Path], before: dict[str, int]) -> None:
    """After a failed run: remove the log file, logs and folders it made, unless it saved a checkpoint.

    A run that saved a checkpoint keeps everything (``--resume`` continues from it).
    """
    import shutil

    if _checkpoints(out_dir) != before:
        return
    configure_logging(0)  # closes train.log
    for path in reversed(made):  # logs/ and train.log before the folder
        if path == out_dir:
            shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)  # empty: none was saved
            try:
                out_dir.rmdir()
            except OSError:
                pass
        elif path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


@main.command(short_help="Accuracy, per-class F1 and confusion of a model on a labelled split.")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--data", "source", type=click.Choice(["rgb", "ms"]), default="rgb", show_default=True
)
@click.option("--root", type=click.Path(path_type=Path), required=True, help="Dataset root.")
@click.option(
    "--split-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="RGB: CSV/TXT split to evaluate (default: every image under --root).",
)
@click.option("--split", default="test", show_default=True, help="MS: torchgeo split name.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("out/evaluate"))
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--threads", type=int, help="torch CPU threads.")
@click.option("--device", default="cpu", show_default=True)
@fail_cleanly
def evaluate(
    model: Path,
    source: str,
    root: Path,
    split_file: Path | None,
    split: str,
    out_dir: Path,
    batch_size: int,
    threads: int | None,
    device: str,
) -> None:
    """Write evaluation.json and confusion.png to --out and print the headline numbers."""
    import torch

    from .data import EuroSATRGB, make_dataset, ms_spec
    from .evaluate import evaluate_net, write_report
    from .model import load_model

    if threads:
        torch.set_num_threads(threads)
    loaded = load_model(model, device=device)
    card = loaded.card
    if source == "rgb":
        dataset: Any = EuroSATRGB(root, split_file)
    else:
        dataset = make_dataset(ms_spec(root, card.bands), split)
    report = evaluate_net(
        loaded.net, dataset, card.classes, card.mean, card.std, device=device, batch_size=batch_size
    )
    report["model"] = {"path": str(model), "sha256": loaded.sha256}
    write_report(report, out_dir / "evaluation.json", out_dir / "confusion.png")
    per_class = ", ".join(f"{c} {v['f1']:.3f}" for c, v in report["per_class"].items())
    click.echo(
        f"overall accuracy {report['overall_accuracy']:.4f}  macro F1 {report['macro_f1']:.4f}  "
        f"n={report['n']}\nF1: {per_class}\nwrote {out_dir / 'evaluation.json'} and "
        f"{out_dir / 'confusion.png'}"
    )
    if log.isEnabledFor(logging.DEBUG):
        log.debug("%s", json.dumps(report))


if __name__ == "__main__":
    main()
