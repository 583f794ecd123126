"""The geocam model: a timm ResNet50 plus the metadata a scene run needs, in one safetensors file.

File format (``geocam.model/1``): a ``.safetensors`` file whose tensors are the timm model's
``state_dict`` (float16 or float32; BatchNorm counters are int64) and whose header metadata holds
``{"format": "geocam.model/1", "geocam": "<JSON of ModelCard>"}``. Loading never unpickles.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..errors import ModelFormatError
from .card import GeocamModel, ModelCard
from .networks import build_inference_net
from .resnet import ResNet, fold_batch_norms

log = logging.getLogger(__name__)


FORMAT = "geocam.model/1"


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
    with their BatchNorms folded into the convolutions (:func:`geocam.model.resnet.fold_batch_norms`);
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
    load_s = time.perf_counter() - start
    log.info(
        "model %s loaded (%s, %d bands, %d classes, sha256 %s) on %s as %s in %.2f s",
        path,
        card.architecture,
        len(card.bands),
        len(card.classes),
        digest[:12],
        device,
        dtype,
        load_s,
    )
    return GeocamModel(net=net, card=card, sha256=digest, load_s=load_s)


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
