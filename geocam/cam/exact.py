"""The exact engine: every window is classified on its own, as in training.

For a network with global average pooling and a linear head (timm ResNets),
``CAM_c(x, y) = sum_k w[c, k] * F_k(x, y)`` where ``F = net.forward_features(x)`` is the last
stage's map (ResNet50 ``layer4``, 32x downsampled: a 64 px window gives 2 x 2 cells). One matrix
product gives every class; the window logit is the spatial mean of the CAM plus the bias. CAMs
are returned raw (no ReLU, no normalisation) so that stitching can blend them and the scene is
normalised once (DESIGN.md). ``forward_features`` needs no hooks, so no context manager is
needed here (STYLE C9 applies to hook-based extractors).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from ..config import Precision
from ..runtime import compute_dtype, resolve_precision
from .base import WindowScores, cam_head, prepare_net

log = logging.getLogger(__name__)


class ExactEngine:
    """Classifies every window on its own (as in training) and computes all CAMs in one pass.

    Args:
        net: a timm ResNet-style classifier in eval mode.
        batch_size: windows per forward pass.
        device: torch device to run on.
        precision: ``"auto"``, ``"bf16"`` or ``"fp32"``: the weights' and activations' dtype.
        input_scale: resize factor applied to each window before the network.
    """

    name = "exact"
    context_px = 0  # each window alone: no pixels around it

    def __init__(
        self,
        net: nn.Module,
        batch_size: int = 64,
        device: str | torch.device = "cpu",
        precision: Precision = "auto",
        input_scale: float = 1.0,
    ) -> None:
        self.device = torch.device(device)
        self.precision = resolve_precision(precision, self.device)
        self.dtype = compute_dtype(self.precision)
        self.batch_size = batch_size
        self.input_scale = input_scale
        self.net = prepare_net(net, self.device, self.dtype)
        weight, bias = cam_head(self.net)
        self.forward_features: Callable[[torch.Tensor], torch.Tensor] = self.net.forward_features  # type: ignore[assignment]
        self.weight = weight
        self.bias_t = bias
        self.bias: npt.NDArray[np.float32] = bias.cpu().numpy().astype(np.float32)

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.input_scale != 1.0:
            x = F.interpolate(
                x,
                scale_factor=self.input_scale,
                mode="bilinear",
                align_corners=False,
                antialias=self.input_scale < 1.0,
            )
        x = x.to(self.device, self.dtype, memory_format=torch.channels_last)
        feats = self.forward_features(x).float()
        cams = torch.einsum("kc,nchw->nkhw", self.weight, feats)
        logits = cams.mean(dim=(2, 3)) + self.bias_t
        return logits, cams

    def score(
        self,
        image: npt.NDArray[np.float32],
        origins_rc: Sequence[tuple[int, int]],
        window_px: int,
    ) -> Iterator[WindowScores]:
        """Score windows cut from ``image``; see :meth:`Engine.score`."""
        tensor = torch.from_numpy(np.ascontiguousarray(image))
        for start in range(0, len(origins_rc), self.batch_size):
            batch = origins_rc[start : start + self.batch_size]
            x = torch.stack([tensor[:, r : r + window_px, c : c + window_px] for r, c in batch])
            with torch.inference_mode():
                logits, cams = self._forward(x)
                probs = torch.softmax(logits, dim=1)
            yield WindowScores(
                probs=probs.cpu().numpy().astype(np.float32),
                cams=cams.cpu().numpy().astype(np.float32),
            )
