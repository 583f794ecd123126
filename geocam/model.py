"""The geocam model: a timm ResNet50 plus the metadata a scene run needs, in one safetensors file.

File format (``geocam.model/1``): a ``.safetensors`` file whose tensors are the timm model's
``state_dict`` (float16 or float32; BatchNorm counters are int64) and whose header metadata holds
``{"format": "geocam.model/1", "geocam": "<JSON of ModelCard>"}``. Loading never unpickles.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import urllib.error
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from .errors import ModelFormatError, WeightsNotFoundError
from .resnet import ResNet, build_resnet, fold_batch_norms

log = logging.getLogger(__name__)

FORMAT = "geocam.model/1"

#: EuroSAT class names in label order (alphabetical, as torchgeo's ``EuroSAT`` and the RGB split).
EUROSAT_CLASSES: tuple[str, ...] = (
    "AnnualCrop",
    "Forest",
    "HerbaceousVegetation",
    "Highway",
    "Industrial",
    "Pasture",
    "PermanentCrop",
    "Residential",
    "River",
    "SeaLake",
)

#: EuroSAT MS band order (B8A last), which torchgeo's ``EuroSAT`` uses too.
EUROSAT_MS_BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07",
    "B08", "B09", "B10", "B11", "B12", "B8A",
)  # fmt: skip

RGB_BANDS: tuple[str, ...] = ("B04", "B03", "B02")

#: torchvision's ImageNet ResNet50 weights; their keys match timm's ``resnet50``.
IMAGENET_URL = "https://download.pytorch.org/models/resnet50-11ad3fa6.pth"


@dataclass(frozen=True, slots=True)
class Rendering:
    """How Sentinel-2 digital numbers become model input values.

    ``value = clip(dn * scale + offset, clip_min, clip_max)``, per band, where ``dn`` is L1C
    top-of-atmosphere reflectance x 10000 (L2A bottom-of-atmosphere after removing its offset).
    The EuroSAT RGB JPEGs are ``clip(dn / 2750 * 255, 0, 255)`` (DESIGN.md).
    """

    scale: float
    offset: float
    clip_min: float
    clip_max: float
    dn_units: str = "reflectance x 10000"


EUROSAT_RGB_RENDERING = Rendering(scale=255.0 / 2750.0, offset=0.0, clip_min=0.0, clip_max=255.0)
EUROSAT_MS_RENDERING = Rendering(scale=1.0, offset=0.0, clip_min=0.0, clip_max=65535.0)


@dataclass(frozen=True, slots=True)
class ModelCard:
    """Everything a scene run needs to know about a model, stored in its file.

    Attributes:
        architecture: timm model name, e.g. ``"resnet50"``.
        classes: class names in logit order.
        bands: Sentinel-2 band names in input-channel order, e.g. ``("B04", "B03", "B02")``.
        rendering: digital numbers to rendered values (see :class:`Rendering`).
        mean: per-band mean subtracted after rendering, in rendered units.
        std: per-band standard deviation divided after rendering, in rendered units.
        window_px: training patch edge in pixels (EuroSAT: 64).
        gsd_m: ground sampling distance of the training patches in metres (EuroSAT: 10).
        input_scale: factor by which a scene window is resized before the model (1.0: as is).
        training: how the model was trained (data, split, epochs, seed, command, wall time).
        metrics: measured test metrics (overall accuracy, per-class F1).
        geocam_version: version of geocam that wrote the file.
    """

    architecture: str
    classes: tuple[str, ...]
    bands: tuple[str, ...]
    rendering: Rendering
    mean: tuple[float, ...]
    std: tuple[float, ...]
    window_px: int = 64
    gsd_m: float = 10.0
    input_scale: float = 1.0
    training: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    geocam_version: str = ""

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.bands) or len(self.std) != len(self.bands):
            raise ModelFormatError(
                f"`mean` ({len(self.mean)}) and `std` ({len(self.std)}) need one value per band "
                f"of `bands` ({len(self.bands)}); give one per input channel"
            )
        if not self.classes:
            raise ModelFormatError("`classes` is empty; a model needs at least one class name")

    def to_json(self) -> str:
        """Serialise to the JSON string stored in the file header."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> ModelCard:
        """Parse and validate the JSON stored in a file header.

        Args:
            text: JSON object with the :class:`ModelCard` fields.
            source: what the text came from, for error messages.

        Raises:
            ModelFormatError: the JSON is malformed or a required field is missing.
        """
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise ModelFormatError(f"{source}: geocam metadata is not valid JSON ({err})") from err
        required = ("architecture", "classes", "bands", "rendering", "mean", "std")
        missing = [k for k in required if k not in raw]
        if missing:
            raise ModelFormatError(
                f"{source}: geocam metadata lacks {', '.join(missing)}; re-export the model "
                "with `geocam train` or geocam.model.save_model"
            )
        try:
            rendering = Rendering(**raw["rendering"])
        except TypeError as err:
            raise ModelFormatError(f"{source}: bad `rendering` in metadata ({err})") from err
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in raw.items() if k in known}
        kwargs.update(
            rendering=rendering,
            classes=tuple(raw["classes"]),
            bands=tuple(raw["bands"]),
            mean=tuple(float(v) for v in raw["mean"]),
            std=tuple(float(v) for v in raw["std"]),
        )
        return cls(**kwargs)


@dataclass(frozen=True, slots=True)
class GeocamModel:
    """A loaded model: network (eval mode), card, file SHA-256, seconds the load took."""

    net: nn.Module
    card: ModelCard
    sha256: str
    load_s: float = 0.0


def build_net(architecture: str, in_channels: int, num_classes: int) -> nn.Module:
    """Create an untrained timm classifier (global average pool + linear head).

    Args:
        architecture: timm model name; geocam's CAM needs a GAP + linear head (ResNets).
        in_channels: number of input bands.
        num_classes: number of output logits.
    """
    import timm  # heavy (pulls torchvision): only where a trainable timm network is needed

    net: nn.Module = timm.create_model(
        architecture, pretrained=False, num_classes=num_classes, in_chans=in_channels
    )
    return net


def build_inference_net(architecture: str, in_channels: int, num_classes: int) -> nn.Module:
    """A network to load weights into for inference: geocam's light ResNet, else timm's.

    Both have timm's state-dict keys; the light one spares scene runs importing timm.
    """
    return build_resnet(architecture, in_channels, num_classes) or build_net(
        architecture, in_channels, num_classes
    )


def save_model(
    path: Path, net: nn.Module, card: ModelCard, dtype: torch.dtype = torch.float16
) -> None:
    """Write ``net`` and ``card`` to one safetensors file, atomically.

    Args:
        path: destination ``.safetensors`` file.
        net: the trained network (timm state dict keys).
        card: metadata; its ``classes`` and ``bands`` must match the network's shapes.
        dtype: floating-point storage type of the weights (float16 halves the file).
    """
    state = {
        k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).contiguous().cpu()
        for k, v in net.state_dict().items()
    }
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(tmp), metadata={"format": FORMAT, "geocam": card.to_json()})
    os.replace(tmp, path)


def read_card(path: Path) -> ModelCard:
    """Read only the metadata of a geocam model file (no weights are loaded).

    Raises:
        ModelFormatError: the file is not a safetensors file or not a geocam model.
    """
    return _read_header(Path(path))[0]


def _read_header(path: Path) -> tuple[ModelCard, dict[str, str]]:
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.safetensors"))
        hint = f" (it holds {', '.join(inside[:3])})" if inside else ""
        raise ModelFormatError(
            f"`model`={str(path)!r} is a folder{hint}; pass the geocam .safetensors file itself"
        )
    if not path.is_file():
        raise ModelFormatError(f"`model`={str(path)!r} does not exist; pass a geocam .safetensors")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as err:  # safetensors raises its own SafetensorError / OSError types
        raise ModelFormatError(
            f"`model`={str(path)!r} is not a safetensors file ({err}); pass a model written "
            "by `geocam train`"
        ) from err
    if meta.get("format") != FORMAT or "geocam" not in meta:
        raise ModelFormatError(
            f"`model`={str(path)!r} is a safetensors file but not a geocam model (metadata "
            f"format={meta.get('format')!r}, expected {FORMAT!r}); export it with `geocam train`"
        )
    return ModelCard.from_json(meta["geocam"], source=str(path)), meta


def load_model(
    path: Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> GeocamModel:
    """Load a geocam model file without unpickling anything, as an inference network.

    The network is built on the meta device and takes the file's tensors (converted to
    ``dtype``) as its parameters: no throw-away float32 copy is ever allocated. ResNets come
    with their BatchNorms folded into the convolutions (:func:`geocam.resnet.fold_batch_norms`);
    to fine-tune, start from the file with ``geocam train --init``.

    Args:
        path: a ``.safetensors`` file written by :func:`save_model`.
        device: where to put the network.
        dtype: dtype of the floating-point weights (``torch.bfloat16`` for bf16 inference).

    Raises:
        ModelFormatError: not a geocam model, a missing field, or weights that do not fit the card.
    """
    start = time.perf_counter()
    path = Path(path)
    card, _ = _read_header(path)
    with torch.device("meta"):
        net = build_inference_net(card.architecture, len(card.bands), len(card.classes))
    with safe_open(str(path), framework="pt") as f:
        state = {k: _for_inference(f.get_tensor(k), device, dtype) for k in f.keys()}  # noqa: SIM118 - safe_open handle
    try:
        net.load_state_dict(state, assign=True)
    except RuntimeError as err:
        raise ModelFormatError(
            f"`model`={str(path)!r}: weights do not fit a {card.architecture} with "
            f"{len(card.bands)} bands and {len(card.classes)} classes ({err})"
        ) from err
    net.eval().to(device)
    if isinstance(net, ResNet):
        fold_batch_norms(net)
    broken = [
        k for k, t in net.state_dict().items() if t.is_floating_point() and not t.isfinite().all()
    ]
    if broken:
        raise ModelFormatError(
            f"`model`={str(path)!r} has NaN or infinite weights ({', '.join(broken[:3])}"
            f"{', ...' if len(broken) > 3 else ''}); the file is damaged or its training "
            "diverged: export it again"
        )
    digest = file_sha256(path)
    return GeocamModel(net=net, card=card, sha256=digest, load_s=time.perf_counter() - start)


def _for_inference(t: torch.Tensor, device: str | torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A copy of a weight in the inference dtype, conv kernels channels-last (the engines' layout).

    Always a copy: a tensor from ``safe_open`` views the file's memory map, and one such view
    keeps the whole file resident. Converting the layout later would briefly hold a second
    copy of every kernel.
    """
    layout = torch.channels_last if t.ndim == 4 else torch.contiguous_format
    return t.to(
        device=device,
        dtype=dtype if t.is_floating_point() else t.dtype,
        memory_format=layout,
        copy=True,
    )


def file_sha256(path: Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


def normalisation_for(
    bands: Sequence[str], rgb8: bool
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-band (mean, std) in rendered units for EuroSAT inputs.

    Args:
        bands: Sentinel-2 band names in channel order.
        rgb8: True for the 0-255 RGB rendering (ImageNet-like statistics of EuroSAT RGB),
            False for raw digital numbers (torchgeo's EuroSAT statistics).
    """
    if rgb8:
        # Measured on every 5th image of the kaggle-apollo2506 train split (3,780 JPEGs).
        rgb_mean = {"B04": 88.97, "B03": 97.71, "B02": 104.48}
        rgb_std = {"B04": 52.15, "B03": 35.11, "B02": 29.47}
        return tuple(rgb_mean[b] for b in bands), tuple(rgb_std[b] for b in bands)
    from torchgeo.datamodules.eurosat import MEAN, STD

    return tuple(float(MEAN[b]) for b in bands), tuple(float(STD[b]) for b in bands)
