"""Fine-tune a ResNet50 on EuroSAT with TorchGeo's ``tasks.Classification`` and export a geocam model.

The Lightning module is TorchGeo's :class:`~torchgeo.tasks.Classification`; geocam only adds the
initial weights it resolves itself (ImageNet, TorchGeo weights by name, a local file, none), a
warm-up + cosine learning-rate schedule (from-scratch training needs it; TorchGeo's default
``ReduceLROnPlateau`` keeps the initial rate for ``patience`` epochs) and label smoothing.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import pickle
import platform
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from torch import Tensor, nn
from torch.utils.data import Subset
from torchgeo.tasks import Classification

from .augment import RadiometricJitter
from .cam import cpu_supports_bf16
from .data import DataSpec, EuroSATDataModule
from .errors import ConfigError
from .evaluate import evaluate_net
from .model import EUROSAT_CLASSES, ModelCard, load_init_weights, resolve_init_weights, save_model

log = logging.getLogger(__name__)


class EuroSATClassification(Classification):
    """TorchGeo ``Classification`` with geocam's weight init, warm-up + cosine LR and smoothing."""

    def __init__(
        self,
        model: str = "resnet50",
        in_channels: int = 3,
        num_classes: int = 10,
        init: str = "none",
        download: bool = False,
        lr: float = 2e-3,
        weight_decay: float = 0.05,
        warmup_epochs: int = 2,
        label_smoothing: float = 0.1,
        context_weight: float = 0.0,
        mosaic_grid: int = 3,
        consistency_weight: float = 0.0,
    ) -> None:
        """Create the task; arguments are saved as Lightning hyper-parameters.

        Args:
            model: timm model name.
            in_channels: input bands.
            num_classes: classes.
            init: initial weights (see :func:`geocam.model.resolve_init_weights`).
            download: allow downloading ``init`` weights that are not cached.
            lr: peak AdamW learning rate.
            weight_decay: AdamW weight decay.
            warmup_epochs: epochs of linear warm-up before the cosine decay.
            label_smoothing: cross-entropy label smoothing.
            context_weight: weight of the mosaic (context) loss; 0 disables it. See
                :meth:`mosaic_loss`.
            mosaic_grid: patches per mosaic side for the context and consistency losses.
            consistency_weight: weight of the dense-exact consistency loss; 0 disables it. See
                :meth:`consistency_loss`. When on, batch norms keep their running statistics.
        """
        super().__init__(
            model=model,
            weights=None,
            in_channels=in_channels,
            num_classes=num_classes,
            lr=lr,
        )

    def configure_models(self) -> None:
        """Create the timm model, then load the resolved initial weights into it."""
        super().configure_models()
        state = resolve_init_weights(self.hparams["init"], self.hparams["download"])
        if state is not None:
            left = load_init_weights(self.model, state)
            log.info("initial weights %s; left random: %s", self.hparams["init"], left)

    def configure_losses(self) -> None:
        """Cross-entropy with label smoothing."""
        self.criterion = nn.CrossEntropyLoss(label_smoothing=self.hparams["label_smoothing"])

    def training_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:  # noqa: ANN401
        """TorchGeo's loss on isolated patches, plus the mosaic loss when enabled."""
        loss: Tensor = super().training_step(batch, batch_idx, dataloader_idx)
        weight = float(self.hparams["context_weight"])
        if weight > 0:
            context = self.mosaic_loss(batch["image"], batch["label"])
            self.log("train_context_loss", context, batch_size=batch["image"].shape[0])
            loss = loss + weight * context
        weight = float(self.hparams.get("consistency_weight", 0.0))
        if weight > 0:
            consistency = self.consistency_loss(batch["image"])
            self.log("train_consistency_loss", consistency, batch_size=batch["image"].shape[0])
            loss = loss + weight * consistency
        return loss

    def on_train_epoch_start(self) -> None:
        """Keep batch norms on their running statistics while the consistency loss is on.

        The loss compares one forward pass over mosaics with another over windows cut from
        them; with per-batch statistics the two would be normalised differently (and neither as
        at inference).
        """
        if float(self.hparams.get("consistency_weight", 0.0)) > 0:
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def _mosaics(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Random patches tiled ``mosaic_grid`` x ``mosaic_grid`` into images; their indices.

        The indices are row-major within each mosaic.
        """
        k = int(self.hparams["mosaic_grid"])
        n = (images.shape[0] // (k * k)) * k * k
        pick = torch.randperm(images.shape[0], device=images.device)[:n]
        x = images[pick]
        _, bands, rows, cols = x.shape
        m = n // (k * k)
        mosaic = (
            x.view(m, k, k, bands, rows, cols)
            .permute(0, 3, 1, 4, 2, 5)
            .reshape(m, bands, k * rows, k * cols)
            .contiguous(memory_format=torch.channels_last)
        )
        return mosaic, pick

    def consistency_loss(self, images: Tensor) -> Tensor:
        """Make each window's cells of a mosaic's CAM match the window's own CAM.

        The backbone runs once over each mosaic (as the dense scene engine runs over a block),
        and, without gradient, once over every patch-sized window at half-patch steps inside it,
        each window alone with zero padding (as the exact engine and training see them). The
        loss is the mean squared difference of the two CAMs on each window's cells, over the
        mean square of the exact CAMs. Minimising it makes dense runs agree with exact runs,
        straddling windows included, which is what ``benchmarks/scene_speed.py`` measures.

        Args:
            images: (batch, bands, rows, cols) normalised patches.
        """
        mosaic, _ = self._mosaics(images)
        if mosaic.shape[0] == 0:
            return images.new_zeros(())
        head = self.model.get_classifier()
        dense = torch.einsum("kc,mchw->mkhw", head.weight, self.model.forward_features(mosaic))
        win = images.shape[-1]
        cell = mosaic.shape[-1] // dense.shape[-1]
        offsets = range(0, mosaic.shape[-1] - win + 1, win // 2)
        student = torch.stack(
            [
                dense[:, :, r // cell : (r + win) // cell, c // cell : (c + win) // cell]
                for r in offsets
                for c in offsets
            ],
            dim=1,
        ).flatten(0, 1)
        with torch.no_grad():
            crops = torch.stack(
                [mosaic[:, :, r : r + win, c : c + win] for r in offsets for c in offsets], dim=1
            ).flatten(0, 1)
            feats = self.model.forward_features(crops.contiguous(memory_format=torch.channels_last))
            teacher = torch.einsum("kc,nchw->nkhw", head.weight, feats)
        scale = teacher.float().pow(2).mean().clamp_min(1e-6)
        loss: Tensor = (student.float() - teacher.float()).pow(2).mean() / scale
        return loss

    def mosaic_loss(self, images: Tensor, labels: Tensor) -> Tensor:
        """Classify patches inside mosaics by pooling their cells of the mosaic's feature map.

        Patches are tiled ``mosaic_grid`` x ``mosaic_grid`` into one image; the backbone runs
        once over it and each patch's logits come from average-pooling the feature cells over
        that patch, exactly as geocam's dense engine scores scene windows. Training on both
        isolated patches and mosaics teaches the network to classify a window from its own
        pixels whatever surrounds it (zero padding or neighbours), so that dense and exact
        scene runs agree.

        Args:
            images: (batch, bands, rows, cols) normalised patches.
            labels: (batch,) class indices.
        """
        k = int(self.hparams["mosaic_grid"])
        mosaic, pick = self._mosaics(images)
        y = labels[pick]
        n, m = y.shape[0], mosaic.shape[0]
        if m == 0:
            return images.new_zeros(())
        feats = self.model.forward_features(mosaic)
        ch, fr, fc = feats.shape[1], feats.shape[2] // k, feats.shape[3] // k
        pooled = feats.reshape(m, ch, k, fr, k, fc).mean(dim=(3, 5))
        logits = self.model.get_classifier()(pooled.permute(0, 2, 3, 1).reshape(n, ch))
        loss: Tensor = self.criterion(logits, y)
        return loss

    def configure_optimizers(self) -> Any:  # noqa: ANN401 - Lightning's union type
        """AdamW with linear warm-up then cosine decay to zero, stepped per batch."""
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        for name, p in self.named_parameters():
            (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": self.hparams["weight_decay"]},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=self.hparams["lr"],
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        epochs = max(1, int(self.trainer.max_epochs or 1))
        warmup = min(total - 1, total * self.hparams["warmup_epochs"] // epochs)

        def factor(step: int) -> float:
            if step < warmup:
                return float((step + 1) / (warmup + 1))
            progress = (step - warmup) / max(1, total - warmup)
            return float(0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Settings of one training run (see ``pipelines/finetune_eurosat.yaml``)."""

    data: DataSpec
    out_dir: Path
    model_path: Path
    architecture: str = "resnet50"
    init: str = "none"
    download: bool = False
    epochs: int = 60
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 2
    label_smoothing: float = 0.1
    context_weight: float = 0.0
    mosaic_grid: int = 3
    consistency_weight: float = 0.0
    radiometric: float = 0.0
    seed: int = 0
    num_workers: int = 2
    threads: int | None = None
    precision: str = "auto"
    accelerator: str = "auto"
    limit_images: int | None = None
    max_minutes: float | None = None
    resume: bool = False
    command: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"`epochs`={self.epochs} must be >= 1")
        if self.batch_size < 1:
            raise ConfigError(f"`batch_size`={self.batch_size} must be >= 1")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"`precision`={self.precision!r}; use auto, bf16 or fp32")
        if not 0.0 <= self.radiometric <= 1.0:
            raise ConfigError(
                f"`radiometric`={self.radiometric} is a probability; give a value in 0..1"
            )
        if self.limit_images is not None and self.limit_images < 1:
            raise ConfigError(f"`limit_images`={self.limit_images} must be >= 1")


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

    jitter = RadiometricJitter(probability=cfg.radiometric) if cfg.radiometric > 0 else None
    dm_kwargs: dict[str, Any] = {
        "batch_size": cfg.batch_size,
        "num_workers": cfg.num_workers,
        "jitter": jitter,
    }
    datamodule: EuroSATDataModule
    if cfg.limit_images:
        datamodule = _SubsetDataModule(cfg.data, cfg.limit_images, cfg.seed, **dm_kwargs)
    else:
        datamodule = EuroSATDataModule(cfg.data, **dm_kwargs)
    task = EuroSATClassification(
        model=cfg.architecture,
        in_channels=len(cfg.data.bands),
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
    log.info("training %s on %s, precision %s", cfg.architecture, cfg.data.source, precision)
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
    mean, std = cfg.data.mean_std
    device = "cuda" if torch.cuda.is_available() and cfg.accelerator != "cpu" else "cpu"
    report = evaluate_net(
        net, datamodule.test_dataset, EUROSAT_CLASSES, mean, std, device=device, batch_size=256
    )
    history = _read_history(cfg.out_dir)
    card = ModelCard(
        architecture=cfg.architecture,
        classes=EUROSAT_CLASSES,
        bands=cfg.data.bands,
        rendering=cfg.data.rendering,
        mean=mean,
        std=std,
        window_px=64,
        gsd_m=10.0,
        input_scale=1.0,
        training={
            "data": cfg.data.source,
            "root": str(cfg.data.root),
            "splits": {k: str(v) if v else None for k, v in cfg.data.splits.items()},
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
            **dict(cfg.extra),
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
    save_model(cfg.model_path, net, card)
    summary = {
        "model": str(cfg.model_path),
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
    from . import __version__

    return __version__


def command_line() -> str:
    """The command that started this process, for model cards."""
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])


__all__ = ["EuroSATClassification", "TrainConfig", "cpu_supports_bf16", "train"]
