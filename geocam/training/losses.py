"""The losses that make dense scene runs agree with exact ones, on mosaics of training patches.

geocam's dense engine runs the backbone once over a block and pools each window from the
feature map, while the exact engine (and training) sees each window alone, zero-padded. Both
losses tile random patches of a batch into ``grid`` x ``grid`` mosaics and run the backbone over
them: :func:`mosaic_loss` classifies each patch from its cells of the mosaic's features, and
:func:`consistency_loss` matches each window's cells of the mosaic's CAM to the window's own
CAM. ``model`` is a timm network (``forward_features``, ``get_classifier``).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor, nn


class TimmNet(Protocol):
    """The two methods of a timm classifier that the losses use."""

    def forward_features(self, x: Tensor) -> Tensor:
        """(batch, channels, rows, cols) feature map of (batch, bands, rows, cols) images."""
        ...

    def get_classifier(self) -> nn.Linear:
        """The linear head over the pooled features."""
        ...


def mosaics(images: Tensor, grid: int) -> tuple[Tensor, Tensor]:
    """Random patches tiled ``grid`` x ``grid`` into images; their indices.

    Args:
        images: (batch, bands, rows, cols) normalised patches.
        grid: patches per mosaic side.

    Returns:
        (mosaics, bands, grid * rows, grid * cols) channels-last, and the (mosaics * grid**2,)
        indices of the patches used, row-major within each mosaic.
    """
    k = grid
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


def consistency_loss(model: TimmNet, images: Tensor, grid: int) -> Tensor:
    """Make each window's cells of a mosaic's CAM match the window's own CAM.

    The backbone runs once over each mosaic (as the dense scene engine runs over a block),
    and, without gradient, once over every patch-sized window at half-patch steps inside it,
    each window alone with zero padding (as the exact engine and training see them). The
    loss is the mean squared difference of the two CAMs on each window's cells, over the
    mean square of the exact CAMs, so that dense runs agree with exact runs, straddling
    windows included.

    Args:
        model: the timm network.
        images: (batch, bands, rows, cols) normalised patches.
        grid: patches per mosaic side.
    """
    mosaic, _ = mosaics(images, grid)
    if mosaic.shape[0] == 0:
        return images.new_zeros(())
    head = model.get_classifier()
    dense = torch.einsum("kc,mchw->mkhw", head.weight, model.forward_features(mosaic))
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
        feats = model.forward_features(crops.contiguous(memory_format=torch.channels_last))
        teacher = torch.einsum("kc,nchw->nkhw", head.weight, feats)
    scale = teacher.float().pow(2).mean().clamp_min(1e-6)
    loss: Tensor = (student.float() - teacher.float()).pow(2).mean() / scale
    return loss


def mosaic_loss(
    model: TimmNet, criterion: nn.Module, images: Tensor, labels: Tensor, grid: int
) -> Tensor:
    """Classify patches inside mosaics by pooling their cells of the mosaic's feature map.

    The backbone runs once over each mosaic and each patch's logits come from average-pooling
    the feature cells over that patch, exactly as geocam's dense engine scores scene windows.
    Training on both isolated patches and mosaics teaches the network to classify a window
    from its own pixels whatever surrounds it (zero padding or neighbours).

    Args:
        model: the timm network.
        criterion: the classification loss.
        images: (batch, bands, rows, cols) normalised patches.
        labels: (batch,) class indices.
        grid: patches per mosaic side.
    """
    k = grid
    mosaic, pick = mosaics(images, grid)
    y = labels[pick]
    n, m = y.shape[0], mosaic.shape[0]
    if m == 0:
        return images.new_zeros(())
    feats = model.forward_features(mosaic)
    ch, fr, fc = feats.shape[1], feats.shape[2] // k, feats.shape[3] // k
    pooled = feats.reshape(m, ch, k, fr, k, fc).mean(dim=(3, 5))
    logits = model.get_classifier()(pooled.permute(0, 2, 3, 1).reshape(n, ch))
    loss: Tensor = criterion(logits, y)
    return loss
