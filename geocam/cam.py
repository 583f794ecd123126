"""Score windows: logits, softmax probabilities and Class Activation Maps of every class, no gradients.

For a network with global average pooling and a linear head (timm ResNets),
``CAM_c(x, y) = sum_k w[c, k] * F_k(x, y)`` where ``F = net.forward_features(x)`` is the last
stage's map (ResNet50 ``layer4``, 32x downsampled: a 64 px window gives 2 x 2 cells). One matrix
product gives every class; the window logit is the spatial mean of the CAM plus the bias. CAMs
are returned raw (no ReLU, no normalisation) so that stitching can blend them and the scene is
normalised once (DESIGN.md). ``forward_features`` needs no hooks, so no context manager is
needed here (STYLE C9 applies to hook-based extractors).

Engines share the :class:`Engine` protocol: they take a block of rendered pixels plus the
window origins inside it and yield :class:`WindowScores` per batch. :class:`ExactEngine` scores
each window on its own, as in training; a dense engine (backbone once per block, windows pooled
from the feature map) slots in behind the same protocol.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from .config import Precision
from .errors import ConfigError, ModelFormatError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WindowScores:
    """Scores of a batch of windows.

    Attributes:
        logits: ``(windows, classes)`` float32.
        probs: ``(windows, classes)`` float32 softmax probabilities.
        cams: ``(windows, classes, rows, cols)`` float32 raw CAMs on the feature grid.
    """

    logits: npt.NDArray[np.float32]
    probs: npt.NDArray[np.float32]
    cams: npt.NDArray[np.float32]


@runtime_checkable
class Engine(Protocol):
    """Turns rendered pixels and window origins into per-window scores."""

    name: str
    bias: npt.NDArray[np.float32]

    def score(
        self,
        image: npt.NDArray[np.float32],
        origins_rc: Sequence[tuple[int, int]],
        window_px: int,
    ) -> Iterator[WindowScores]:
        """Score windows cut from ``image``.

        Args:
            image: normalised model input ``(bands, rows, cols)`` float32.
            origins_rc: (row, col) of each window's top-left pixel inside ``image``.
            window_px: window edge in pixels.

        Yields:
            Scores for consecutive batches of ``origins_rc``, in order.
        """
        ...


def cpu_supports_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX)."""
    checker = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(torch.backends.mkldnn.is_available()) and bool(  # type: ignore[no-untyped-call]
        checker() if checker is not None else False
    )


def resolve_precision(precision: Precision, device: torch.device) -> Precision:
    """Pick ``"bf16"`` or ``"fp32"``.

    ``"auto"`` picks bf16 wherever it runs natively: CUDA devices with bf16, and CPUs with
    AVX512-BF16 or AMX. On the 2-core AVX512-BF16 EPYC (no AMX), ResNet50 ``forward_features``
    on a quiet machine ran 351.5 windows/s in bf16 vs 199.8 in fp32 (batch 128 of 64 px) and
    took 1.15 s vs 2.78 s on one 768 x 768 block. (Earlier readings of "no faster" were taken
    with another job on the CPU.)

    Args:
        precision: ``"auto"``, ``"bf16"`` or ``"fp32"``.
        device: the device the model runs on.

    Raises:
        ConfigError: bf16 was asked for on a device that cannot run it.
    """
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
    elif device.type == "cpu":
        ok = cpu_supports_bf16()
    else:
        ok = False
    if precision == "bf16" and not ok:
        raise ConfigError(f"`precision`='bf16' is not supported on device {device}; use fp32")
    if precision == "auto":
        return "bf16" if ok else "fp32"
    return precision


def compute_dtype(precision: str) -> torch.dtype:
    """The torch dtype of a resolved precision (``"bf16"`` or ``"fp32"``)."""
    return torch.bfloat16 if precision == "bf16" else torch.float32


def torch_device(device: str | torch.device) -> torch.device:
    """Parse a device name and check that torch can use it here.

    ``"auto"`` is CUDA when torch sees a GPU, else the CPU.

    Raises:
        ConfigError: not a torch device, or CUDA asked for where there is none.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ConfigError(
            f"`device`={device!r} is not a torch device ({err}); use cpu or cuda"
        ) from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"`device`={device!r} but CUDA is not available here; use --device cpu")
    return dev


def prepare_net(net: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """The network in eval mode on ``device``, channels-last, with weights in ``dtype``.

    bf16 weights rather than autocast: no weight casts on every batch and half the weight
    memory. A network already on that device in that dtype is used as it is (load it so with
    ``load_model(..., dtype=...)``); otherwise a converted copy is, and the caller's is unchanged.
    """
    param = next(net.parameters(), None)
    same_device = (
        param is not None
        and param.device.type == device.type
        and (device.index is None or param.device.index == device.index)
    )  # "cuda" means the current device, where "cuda:0" tensors live
    if param is not None and (param.dtype != dtype or not same_device):
        net = copy.deepcopy(net).to(device, dtype)
    return net.eval().to(memory_format=torch.channels_last)  # type: ignore[call-overload]


def cam_head(net: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The linear head's weight ``(classes, channels)`` and bias ``(classes,)``, float32.

    Raises:
        ModelFormatError: the network lacks ``forward_features`` or a linear classifier after
            average pooling.
    """
    get_classifier = getattr(net, "get_classifier", None)
    head = get_classifier() if callable(get_classifier) else getattr(net, "fc", None)
    pool = getattr(net, "global_pool", None)
    pool_type = getattr(pool, "pool_type", "avg")
    if (
        not isinstance(head, nn.Linear)
        or not hasattr(net, "forward_features")
        or pool_type != "avg"
    ):
        raise ModelFormatError(
            f"`model` network {type(net).__name__} has no average pool + linear head with "
            "forward_features; CAM needs a timm ResNet-style classifier"
        )
    weight = head.weight.detach().float()
    bias = (
        head.bias.detach().float()
        if head.bias is not None
        else torch.zeros(weight.shape[0], device=weight.device)
    )
    return weight, bias


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
                logits=logits.cpu().numpy().astype(np.float32),
                probs=probs.cpu().numpy().astype(np.float32),
                cams=cams.cpu().numpy().astype(np.float32),
            )


def make_engine(
    mode: str,
    net: nn.Module,
    batch_size: int,
    device: str | torch.device,
    precision: Precision,
    input_scale: float,
) -> Engine:
    """Build the engine for a mode.

    Args:
        mode: ``"exact"`` (each window alone) or ``"dense"`` (one backbone pass per block,
            see :mod:`geocam.dense`).
        net: the classifier.
        batch_size: windows per forward pass.
        device: torch device.
        precision: ``"auto"``, ``"bf16"`` or ``"fp32"``.
        input_scale: resize factor of windows before the network.

    Raises:
        ConfigError: an unknown or unavailable mode, or a device torch cannot use.
    """
    dev = torch_device(device)
    if mode == "exact":
        return ExactEngine(net, batch_size, dev, precision, input_scale)
    if mode == "dense":
        if input_scale != 1.0:
            raise ConfigError(
                f"the model's `input_scale`={input_scale} resizes each window; dense mode pools "
                "one feature map at the scene's scale - use --mode exact"
            )
        from .dense import DenseEngine  # the dense engine builds on this module

        return DenseEngine(net, dev, precision, batch_size=max(batch_size, 256))
    raise ConfigError(f"`mode`={mode!r} is not one of exact, dense")
