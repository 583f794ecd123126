"""The dense engine: the backbone runs once over a block, windows are pooled from its feature map.

For a GAP + linear head, a window's logits are the mean of its CAM cells plus the bias, and its
CAM is the block's CAM restricted to the window's cells. When windows lie on the feature lattice
(origins and size multiples of the network's stride, 32 px for a ResNet50), every window of a
block can be read off one feature map: overlapping windows share their work, about
``(window / stride)^2`` less compute than scoring each window alone (4x at 64/32).

What changes is context: a cell of the block's feature map sees its neighbours where an isolated
window sees zero padding. Models trained with geocam's mosaic loss (``--context-weight``) are
trained for both; ``benchmarks/scene_speed.py`` measures how far dense and exact runs agree.

To make the result independent of how the scene is cut into blocks, each block is read with
``context_px`` of extra pixels on every side (the pipeline asks :attr:`DenseEngine.context_px`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from ..config import Precision
from ..errors import ConfigError
from ..runtime import compute_dtype, resolve_precision
from .base import WindowScores, cam_head, prepare_net

log = logging.getLogger(__name__)

#: Output stride of timm ResNets' ``forward_features``.
FEATURE_STRIDE_PX = 32


class DenseEngine:
    """Scores all windows of a block from one backbone pass.

    Args:
        net: a timm ResNet-style classifier in eval mode.
        device: torch device.
        precision: ``"auto"``, ``"bf16"`` or ``"fp32"``: the weights' and activations' dtype.
        context_px: extra pixels the pipeline reads around each block (multiple of 32).
        batch_size: windows per yielded :class:`WindowScores` batch.
        max_pixels: largest image (rows x cols) run in one forward pass; larger blocks are cut
            into lattice-aligned strips with ``context_px`` overlap, so peak memory stays bounded.
    """

    name = "dense"

    def __init__(
        self,
        net: nn.Module,
        device: str | torch.device = "cpu",
        precision: Precision = "auto",
        context_px: int = 64,
        batch_size: int = 256,
        max_pixels: int = 1280 * 1280,
    ) -> None:
        if context_px % FEATURE_STRIDE_PX:
            raise ConfigError(
                f"`context_px`={context_px} must be a multiple of {FEATURE_STRIDE_PX} px"
            )
        self.device = torch.device(device)
        self.precision = resolve_precision(precision, self.device)
        self.context_px = context_px
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        self.dtype = compute_dtype(self.precision)
        self.net = prepare_net(net, self.device, self.dtype)
        self.forward_features: Callable[[torch.Tensor], torch.Tensor] = self.net.forward_features  # type: ignore[assignment]
        weight, bias = cam_head(self.net)
        self.weight = weight.to(self.device)
        self.bias_t = bias.to(self.device)
        self.bias: npt.NDArray[np.float32] = bias.cpu().numpy().astype(np.float32)

    @staticmethod
    def check_grid(window_px: int, stride_px: int) -> None:
        """Raise unless windows and stride lie on the feature lattice.

        Raises:
            ConfigError: ``window_px`` or ``stride_px`` is not a multiple of 32.
        """
        for name, value in (("window_px", window_px), ("stride_px", stride_px)):
            if value % FEATURE_STRIDE_PX:
                raise ConfigError(
                    f"`{name}`={value} is not a multiple of {FEATURE_STRIDE_PX}; dense mode "
                    f"pools {FEATURE_STRIDE_PX} px feature cells - use e.g. 64/32 or --mode exact"
                )

    @torch.inference_mode()
    def cam_map(self, image: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Raw CAM of every class on the feature lattice of ``image``.

        Args:
            image: normalised input ``(bands, rows, cols)``; rows and cols multiples of 32.

        Returns:
            ``(classes, rows / 32, cols / 32)`` float32.
        """
        _, rows, cols = image.shape
        tensor = torch.from_numpy(np.ascontiguousarray(image))
        out = np.empty((len(self.bias), rows // 32, cols // 32), dtype=np.float32)
        # Cut tall blocks into horizontal strips that overlap by the context on both sides.
        strip_rows = max(
            FEATURE_STRIDE_PX,
            (self.max_pixels // max(cols, 1)) // FEATURE_STRIDE_PX * FEATURE_STRIDE_PX,
        )
        core = max(FEATURE_STRIDE_PX, strip_rows - 2 * self.context_px)
        for r0 in range(0, rows, core):
            r1 = min(rows, r0 + core)
            a0, a1 = max(0, r0 - self.context_px), min(rows, r1 + self.context_px)
            x = tensor[None, :, a0:a1].to(self.device, self.dtype)
            feats = self.forward_features(x.contiguous(memory_format=torch.channels_last))
            cams = torch.einsum("kc,nchw->nkhw", self.weight, feats.float())[0]
            off = (r0 - a0) // 32
            out[:, r0 // 32 : r1 // 32] = cams[:, off : off + (r1 - r0) // 32].cpu().numpy()
        return out

    def score(
        self,
        image: npt.NDArray[np.float32],
        origins_rc: Sequence[tuple[int, int]],
        window_px: int,
    ) -> Iterator[WindowScores]:
        """Score windows cut from ``image`` (see :class:`geocam.cam.base.Engine`).

        Window origins must lie on one 32 px lattice; the image is cropped to the lattice-aligned
        box that holds every window, and one :meth:`cam_map` serves them all.

        Raises:
            ConfigError: windows off the lattice or not a multiple of 32 px.
        """
        if not origins_rc:
            return
        self.check_grid(window_px, FEATURE_STRIDE_PX)
        rows = np.array([r for r, _ in origins_rc])
        cols = np.array([c for _, c in origins_rc])
        r_base = int(rows.min()) % FEATURE_STRIDE_PX
        c_base = int(cols.min()) % FEATURE_STRIDE_PX
        if np.any(rows % FEATURE_STRIDE_PX != r_base) or np.any(cols % FEATURE_STRIDE_PX != c_base):
            raise ConfigError(
                "window origins are not on one 32 px lattice; dense mode needs the torchgeo grid "
                "with a stride that is a multiple of 32 (`grid: torchgeo`)"
            )
        _, height, width = image.shape
        # Lattice-aligned crop holding all windows and as much context as the image has.
        r0 = r_base
        c0 = c_base
        r1 = r0 + (height - r0) // FEATURE_STRIDE_PX * FEATURE_STRIDE_PX
        c1 = c0 + (width - c0) // FEATURE_STRIDE_PX * FEATURE_STRIDE_PX
        if rows.max() + window_px > r1 or cols.max() + window_px > c1:
            raise ConfigError("a window extends past the block image; the grid and block disagree")
        cams = self.cam_map(image[:, r0:r1, c0:c1])
        cells = window_px // FEATURE_STRIDE_PX
        fr = (rows - r0) // FEATURE_STRIDE_PX
        fc = (cols - c0) // FEATURE_STRIDE_PX
        for start in range(0, len(origins_rc), self.batch_size):
            stop = min(start + self.batch_size, len(origins_rc))
            win = np.stack(
                [cams[:, fr[i] : fr[i] + cells, fc[i] : fc[i] + cells] for i in range(start, stop)]
            )
            logits = win.mean(axis=(2, 3)) + self.bias
            shifted = logits - logits.max(axis=1, keepdims=True)
            probs = np.exp(shifted)
            probs /= probs.sum(axis=1, keepdims=True)
            yield WindowScores(
                probs=probs.astype(np.float32),
                cams=win.astype(np.float32),
            )
