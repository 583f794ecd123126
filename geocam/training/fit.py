"""Train, test and export a geocam model: the Lightning ``Trainer`` around :mod:`.task`.

A run checkpoints every epoch into ``out_dir/checkpoints`` (``resume`` continues from
``last.ckpt``), logs metrics with Lightning's CSV logger, tests the network on the test split
and writes the model with its card (:func:`geocam.model.save_model`) and ``summary.json``.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import pickle
import platform
import time
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import Subset

from ..cam import cpu_supports_bf16
from ..errors import ConfigError
from ..model import EUROSAT_CLASSES, ModelCard, save_model
from .augment import RadiometricJitter
from .config import TrainConfig
from .data import DataSpec, EuroSATDataModule
from .evaluate import evaluate_net
from .task import EuroSATClassification

log = logging.getLogger(__name__)


def lightning_precision(precision: str, accelerator: str) -> str:
    """Map geocam's ``auto|bf16|fp32`` to a Lightning precision string for the accelerator."""
    if precision == "fp32":
        return "32-true"
    if precision == "bf16":
        return "bf16-mixed"
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if on_gpu:
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_supports_bf16() else "32-true"


class _SubsetDataModule(EuroSATDataModule):
    """Datamodule keeping a seeded random ``limit`` images of each split (quick runs)."""

    def __init__(self, spec: DataSpec, limit: int, seed: int, **kwargs: Any) -> None:  # noqa: ANN401
        super().__init__(spec, **kwargs)
        self.limit = limit
        self.seed = seed

    def setup(self, stage: str) -> None:
        super().setup(stage)
        for name in ("train_dataset", "val_dataset", "test_dataset"):
            ds = getattr(self, name)
            if ds is not None and len(ds) > self.limit:
                g = torch.Generator().manual_seed(self.seed)
                idx = torch.randperm(len(ds), generator=g)[: self.limit].tolist()
                setattr(self, name, Subset(ds, idx))
        if isinstance(self.train_dataset, Subset):
            self.fit_batch_to(len(self.train_dataset))


def train(cfg: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Train, test and export a geocam model; resumable from ``out_dir/checkpoints/last.ckpt``.

    Args:
        cfg: the run's settings.
        progress: show Lightning's progress bar (stderr).

    Returns:
        A summary: model path, epochs, wall time, images/s and the test report.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    lightning.seed_everything(cfg.seed, workers=True)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = cfg.out_dir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    if cfg.resume and not last.is_file():
        raise ConfigError(
            f"`resume` asked but {str(last)!r} does not exist; train without --resume"
        )

    spec = cfg.data_spec()
    jitter = RadiometricJitter(probability=cfg.radiometric) if cfg.radiometric > 0 else None
    dm_kwargs: dict[str, Any] = {
        "batch_size": cfg.batch_size,
        "num_workers": cfg.num_workers,
        "jitter": jitter,
    }
    datamodule: EuroSATDataModule
    if cfg.limit_images:
        datamodule = _SubsetDataModule(spec, cfg.limit_images, cfg.seed, **dm_kwargs)
    else:
        datamodule = EuroSATDataModule(spec, **dm_kwargs)
    task = EuroSATClassification(
        model=cfg.architecture,
        in_channels=len(spec.bands),
        num_classes=len(EUROSAT_CLASSES),
        init=cfg.init,
        download=cfg.download,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_epochs=cfg.warmup_epochs,
        label_smoothing=cfg.label_smoothing,
        context_weight=cfg.context_weight,
        mosaic_grid=cfg.mosaic_grid,
        consistency_weight=cfg.consistency_weight,
    )
    task.model.to(memory_format=torch.channels_last)
    precision = lightning_precision(cfg.precision, cfg.accelerator)
    # Keep the newest epoch's checkpoint (save_top_k=1 without a monitor) and copy it to
    # last.ckpt. (With save_top_k=0, Lightning 2.6 writes last.ckpt only when training ends.)
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=1, every_n_epochs=1)
    trainer = Trainer(
        max_epochs=cfg.epochs,
        accelerator=cfg.accelerator,
        devices=1,
        precision=precision,  # type: ignore[arg-type]
        callbacks=[checkpoint, *([TQDMProgressBar(refresh_rate=10)] if progress else [])],
        logger=CSVLogger(cfg.out_dir, name="logs"),
        default_root_dir=cfg.out_dir,
        enable_progress_bar=progress,
        log_every_n_steps=20,
        num_sanity_val_steps=0,
        max_time=timedelta(minutes=cfg.max_minutes) if cfg.max_minutes else None,
    )
    log.info("training %s on %s, precision %s", cfg.architecture, spec.source, precision)
    start = time.perf_counter()
    try:
        trainer.fit(task, datamodule=datamodule, ckpt_path=str(last) if cfg.resume else None)
    except pickle.UnpicklingError as err:  # torch.load(weights_only=True) refused last.ckpt
        raise ConfigError(
            f"`resume`: {str(last)!r} holds pickled objects other than tensors, and geocam never "
            "unpickles those (they could run code); train without --resume or into a new --out"
        ) from err
    wall_s = time.perf_counter() - start

    net = task.model.float().eval().cpu()
    datamodule.setup("test")
    assert datamodule.test_dataset is not None
    mean, std = spec.mean_std
    device = "cuda" if torch.cuda.is_available() and cfg.accelerator != "cpu" else "cpu"
    report = evaluate_net(
        net, datamodule.test_dataset, EUROSAT_CLASSES, mean, std, device=device, batch_size=256
    )
    history = _read_history(cfg.out_dir)
    card = ModelCard(
        architecture=cfg.architecture,
        classes=EUROSAT_CLASSES,
        bands=spec.bands,
        rendering=spec.rendering,
        mean=mean,
        std=std,
        window_px=64,
        gsd_m=10.0,
        input_scale=1.0,
        training={
            "data": spec.source,
            "root": str(spec.root),
            "splits": {k: str(v) if v else None for k, v in spec.splits.items()},
            "limit_images": cfg.limit_images,
            "max_minutes": cfg.max_minutes,
            "epochs": trainer.current_epoch,
            "init": cfg.init,
            "seed": cfg.seed,
            "batch_size": cfg.batch_size,
            "lr": cfg.lr,
            "weight_decay": cfg.weight_decay,
            "label_smoothing": cfg.label_smoothing,
            "context_weight": cfg.context_weight,
            "mosaic_grid": cfg.mosaic_grid,
            "consistency_weight": cfg.consistency_weight,
            "radiometric_jitter": asdict(jitter) if jitter is not None else None,
            "precision": precision,
            "accelerator": str(trainer.accelerator.__class__.__name__),
            "wall_time_s_last_session": round(wall_s, 1),
            "command": cfg.command,
            "host": platform.node(),
            "torch": torch.__version__,
        },
        metrics={
            "split": "test",
            "overall_accuracy": report["overall_accuracy"],
            "macro_f1": report["macro_f1"],
            "f1": {c: report["per_class"][c]["f1"] for c in EUROSAT_CLASSES},
            "n": report["n"],
            "val_history": history,
        },
        geocam_version=_version(),
    )
    save_model(cfg.model_file, net, card)
    summary = {
        "model": str(cfg.model_file),
        "epochs": trainer.current_epoch,
        "wall_time_s": round(wall_s, 1),
        "precision": precision,
        "test": report,
    }
    (cfg.out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _read_history(out_dir: Path) -> list[dict[str, float]]:
    """Per-epoch validation accuracy and loss from the CSV logger (newest version folder)."""
    versions = sorted((out_dir / "logs").glob("version_*/metrics.csv"), key=os.path.getmtime)
    rows: list[dict[str, float]] = []
    for path in versions:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row.get("val_OverallAccuracy"):
                    rows.append(
                        {
                            "epoch": float(row["epoch"]),
                            "val_accuracy": round(float(row["val_OverallAccuracy"]), 4),
                            "val_loss": round(float(row.get("val_loss") or "nan"), 4),
                        }
                    )
    return rows


def _version() -> str:
    from .. import __version__

    return __version__


__all__ = ["lightning_precision", "train"]
