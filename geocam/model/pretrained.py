"""Initial weights for training: torch's hub cache (ImageNet, torchgeo), local files, never unpickled."""

from __future__ import annotations

import logging
import os
import urllib.error
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn

from ..errors import ModelFormatError, WeightsNotFoundError

log = logging.getLogger(__name__)


#: torchvision's ImageNet ResNet50 weights; their keys match timm's ``resnet50``.
IMAGENET_URL = "https://download.pytorch.org/models/resnet50-11ad3fa6.pth"


def hub_checkpoint_path(url: str) -> Path:
    """Where torch's hub cache keeps the file of a weights URL (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def fetch_state_dict(url: str, download: bool) -> dict[str, torch.Tensor]:
    """Load a state dict from torch's hub cache, downloading it only when allowed.

    Args:
        url: the weights' download address; its base name is the cached file name.
        download: whether a missing file may be downloaded.

    Raises:
        WeightsNotFoundError: the file is not cached and cannot (or may not) be downloaded; the
            message names the URL and the path to place the file at.
    """
    cached = hub_checkpoint_path(url)
    hint = f"download {url} and place it at {cached} (or set TORCH_HOME)"
    if not cached.exists() and not download:
        raise WeightsNotFoundError(f"pretrained weights not cached: {hint}; or pass --download")
    try:
        state: dict[str, torch.Tensor] = torch.hub.load_state_dict_from_url(
            url, map_location="cpu", progress=False, weights_only=True
        )
    except (urllib.error.URLError, OSError, ConnectionError) as err:
        raise WeightsNotFoundError(f"cannot download pretrained weights ({err}): {hint}") from err
    return state


def load_weights_only(path: Path, param: str) -> Any:  # noqa: ANN401 - whatever the file holds
    """``torch.load`` with ``weights_only=True``; a file that needs more is refused, never unpickled.

    Args:
        path: a ``.pth``/``.ckpt`` file.
        param: the option that named it, for messages.

    Raises:
        ModelFormatError: the file holds objects other than tensors and plain containers, or is
            not a torch file.
    """
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ModelFormatError(
            f"`{param}`={str(path)!r} holds pickled objects other than tensors, and geocam "
            "never unpickles those (they could run code); save only the weights, e.g. "
            "torch.save(model.state_dict(), path), or a .safetensors file"
        ) from err
    except (RuntimeError, EOFError, OSError) as err:
        detail = (str(err).splitlines() or [type(err).__name__])[0]
        if "weights_only" in detail:  # torch's advice to unpickle; geocam never gives it
            detail = type(err).__name__
        raise ModelFormatError(
            f"`{param}`={str(path)!r} is not a torch weights file ({detail}); pass a .pth "
            "state dict or a .safetensors file"
        ) from err


def resolve_init_weights(spec: str | None, download: bool) -> dict[str, torch.Tensor] | None:
    """Turn an ``--init`` value into a state dict (timm ResNet50 keys) or None.

    Args:
        spec: ``"none"``/None (random), ``"imagenet"`` (torchvision ImageNet ResNet50), a torchgeo
            weight name such as ``"ResNet50_Weights.SENTINEL2_RGB_MOCO"``, or a local
            ``.safetensors``/``.pth`` file.
        download: whether weights missing from the hub cache may be downloaded.

    Raises:
        WeightsNotFoundError: a named weight is unknown or cannot be obtained.
    """
    if spec is None or spec.lower() == "none":
        return None
    if spec.lower() == "imagenet":
        return fetch_state_dict(IMAGENET_URL, download)
    local = Path(spec)
    if local.is_file():
        if local.suffix == ".safetensors":
            with safe_open(str(local), framework="pt") as f:
                return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open handle
        loaded = load_weights_only(local, "init")
        if not isinstance(loaded, dict):
            raise WeightsNotFoundError(
                f"`init`={spec!r} holds no state dict; save one with torch.save"
            )
        inner = loaded.get("state_dict", loaded)
        return {str(k): v for k, v in inner.items() if isinstance(v, torch.Tensor)}
    from torchgeo.models import get_weight  # heavy import, only when a torchgeo weight is named

    try:
        weight = get_weight(spec)
    except (ValueError, KeyError, AttributeError) as err:
        raise WeightsNotFoundError(
            f"`init`={spec!r} is neither 'none', 'imagenet', a file nor a torchgeo weight name "
            "such as 'ResNet50_Weights.SENTINEL2_RGB_MOCO'"
        ) from err
    return fetch_state_dict(str(weight.url), download)


def load_init_weights(net: nn.Module, state: Mapping[str, torch.Tensor]) -> list[str]:
    """Copy pretrained weights into ``net``, adapting ``conv1``; tensors of other shapes are skipped.

    A classifier of another size (ImageNet's 1000 classes) is skipped, one of the same size (a
    geocam model being fine-tuned) is kept.

    A ``conv1`` with another number of input channels is rebuilt from the mean filter over the
    pretrained channels, scaled to keep activations in range (the usual timm/torchgeo approach).

    Returns:
        Names of parameters left at their random initialisation.
    """
    own = net.state_dict()
    picked: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = key.removeprefix("model.").removeprefix("backbone.")
        if key not in own:
            continue
        if key == "conv1.weight" and value.shape[1] != own[key].shape[1]:
            in_ch = own[key].shape[1]
            value = value.mean(dim=1, keepdim=True).repeat(1, in_ch, 1, 1) * (3.0 / in_ch)
        if value.shape == own[key].shape:
            picked[key] = value.to(own[key].dtype)
    net.load_state_dict(picked, strict=False)
    return sorted(set(own) - set(picked))
