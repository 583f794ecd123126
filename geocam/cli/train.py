"""``geocam train`` and ``geocam evaluate``: fine-tune a classifier, and measure one.

Lightning, TorchGeo and torch are imported inside the commands, so that ``geocam run`` and
``geocam --help`` never load them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import click

from ..options import from_mapping, read_yaml
from ..training.config import EvaluateConfig, TrainConfig
from .base import fail_cleanly, main, verbosity
from .logs import command_line, configure_logging
from .options import config_file, config_options, given, quiet

log = logging.getLogger("geocam")


@main.command(short_help="Fine-tune a ResNet50 on EuroSAT and export a geocam model.")
@config_file
@config_options(TrainConfig)
@quiet
@fail_cleanly
def train(config_path: Path | None, quiet: bool, **options: Any) -> None:  # noqa: ANN401
    """Fine-tune through TorchGeo's tasks.Classification; checkpoint every epoch; export a model.

    Writes checkpoints, Lightning's CSV logs, train.log, summary.json and the model to --out.
    """
    settings = read_yaml(config_path) if config_path is not None else {}
    settings.update(given(options))
    missing = [k for k in ("root", "out_dir") if settings.get(k) is None]
    if missing:
        flags = {"root": "--root", "out_dir": "--out"}
        raise click.UsageError(f"missing {', '.join(flags[m] for m in missing)}")
    source = str(config_path) if config_path is not None else "command line"
    cfg = dataclasses.replace(from_mapping(TrainConfig, settings, source), command=command_line())

    from ..training.fit import train as run_training

    out_dir = cfg.out_dir
    made = [p for p in (out_dir, out_dir / "train.log", out_dir / "logs") if not p.exists()]
    before = _checkpoints(out_dir)
    level = 0 if quiet else max(1, verbosity())
    configure_logging(level, out_dir / "train.log")
    try:
        summary = run_training(cfg, progress=not quiet)
    except BaseException:
        _remove_unless_trained(out_dir, made, before, level)
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


def _remove_unless_trained(
    out_dir: Path, made: list[Path], before: dict[str, int], level: int
) -> None:
    """After a failed run: remove the log file, logs and folders it made, unless it saved a checkpoint.

    A run that saved a checkpoint keeps everything (``--resume`` continues from it).
    """
    if _checkpoints(out_dir) != before:
        return
    configure_logging(level)  # closes train.log
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
@config_options(EvaluateConfig)
@fail_cleanly
def evaluate(model: Path, **options: Any) -> None:  # noqa: ANN401
    """Write evaluation.json and confusion.png to --out and print the headline numbers."""
    if options.get("root") is None:
        raise click.UsageError("Missing option '--root'.")
    cfg = from_mapping(EvaluateConfig, given(options), "command line")

    import torch

    from ..cam import torch_device
    from ..model import load_model
    from ..training.data import EuroSATRGB, make_dataset, ms_spec
    from ..training.evaluate import evaluate_net, write_report

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = str(torch_device(cfg.device))
    loaded = load_model(model, device=device)
    card = loaded.card
    if cfg.source == "rgb":
        dataset: Any = EuroSATRGB(cfg.root, cfg.split_file)
    else:
        dataset = make_dataset(ms_spec(cfg.root, card.bands), cfg.split)
    report = evaluate_net(
        loaded.net, dataset, card.classes, card.mean, card.std, device=device,
        batch_size=cfg.batch_size,
    )  # fmt: skip
    report["model"] = {"path": str(model), "sha256": loaded.sha256}
    out_dir = cfg.out_dir
    write_report(report, out_dir / "evaluation.json", out_dir / "confusion.png")
    per_class = ", ".join(f"{c} {v['f1']:.3f}" for c, v in report["per_class"].items())
    click.echo(
        f"overall accuracy {report['overall_accuracy']:.4f}  macro F1 {report['macro_f1']:.4f}  "
        f"n={report['n']}\nF1: {per_class}\nwrote {out_dir / 'evaluation.json'} and "
        f"{out_dir / 'confusion.png'}"
    )
    if log.isEnabledFor(logging.DEBUG):
        log.debug("%s", json.dumps(report))
