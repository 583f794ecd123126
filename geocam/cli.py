"""geocam's command line: ``geocam run``, ``geocam train``, ``geocam evaluate``.

Commands only parse options, build a config, call one library function and exit. This module
owns logging and progress bars; the library stays silent. Errors from geocam exit with code 2
and a one-line message.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click

from .errors import GeocamError

log = logging.getLogger("geocam")

P = ParamSpec("P")
R = TypeVar("R")


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


def fail_cleanly(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn geocam errors into a one-line message and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except GeocamError as err:
            click.echo(f"geocam: error: {err}", err=True)
            sys.exit(2)

    return wrapper


@click.group()
@click.version_option(package_name="geocam")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.pass_context
def main(ctx: click.Context, verbose: int) -> None:
    """Where a land-cover classifier sees each class across whole satellite scenes."""
    ctx.obj = {"verbose": verbose}
    configure_logging(verbose)


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
@click.option("--workers", "num_workers", type=int, help="DataLoader workers.")
@click.option("--threads", type=int, help="torch CPU threads.")
@click.option("--precision", type=click.Choice(["auto", "bf16", "fp32"]))
@click.option("--accelerator", type=click.Choice(["auto", "cpu", "gpu"]))
@click.option("--limit-images", type=int, help="Keep a seeded random N images of each split.")
@click.option("--resume", is_flag=True, default=None, help="Continue from OUT/checkpoints/last.ckpt.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), help="Run folder (checkpoints, logs).")
@click.option("--model", "model_path", type=click.Path(path_type=Path), help="Output .safetensors.")
@click.pass_context
@fail_cleanly
def train(ctx: click.Context, config: Path | None, **options: Any) -> None:  # noqa: ANN401
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
    configure_logging(max(1, ctx.obj["verbose"]), out_dir / "train.log")
    cfg = TrainConfig(data=spec, command=command_line(), **settings)
    summary = run_training(cfg)
    test = summary["test"]
    click.echo(
        f"model: {summary['model']}\nepochs: {summary['epochs']}  wall time: "
        f"{summary['wall_time_s']:.0f} s  test accuracy: {test['overall_accuracy']:.4f} "
        f"(n={test['n']})"
    )


@main.command(short_help="Accuracy, per-class F1 and confusion of a model on a labelled split.")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--data", "source", type=click.Choice(["rgb", "ms"]), default="rgb", show_default=True)
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
