"""The Lightning task: TorchGeo's ``tasks.Classification`` with geocam's init, schedule and losses.

geocam adds the initial weights it resolves itself (ImageNet, TorchGeo weights by name, a local
file, none), a warm-up + cosine learning-rate schedule (from-scratch training needs it;
TorchGeo's default ``ReduceLROnPlateau`` keeps the initial rate for ``patience`` epochs), label
smoothing and the two mosaic losses of :mod:`geocam.training.losses`.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import Tensor, nn
from torchgeo.tasks import Classification

from ..model import load_init_weights, resolve_init_weights
from . import losses

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
        warmup_epochs: int = 3,
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
                :func:`~geocam.training.losses.mosaic_loss`.
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

    def consistency_loss(self, images: Tensor) -> Tensor:
        """The dense-exact consistency loss (:func:`geocam.training.losses.consistency_loss`)."""
        return losses.consistency_loss(self.model, images, int(self.hparams["mosaic_grid"]))

    def mosaic_loss(self, images: Tensor, labels: Tensor) -> Tensor:
        """The mosaic (context) loss (:func:`geocam.training.losses.mosaic_loss`)."""
        grid = int(self.hparams["mosaic_grid"])
        return losses.mosaic_loss(self.model, self.criterion, images, labels, grid)

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
