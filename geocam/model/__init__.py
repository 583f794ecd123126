"""The geocam model: a timm ResNet50 plus the metadata a scene run needs, in one safetensors file.

- :mod:`.card`: the :class:`ModelCard` metadata and a loaded :class:`GeocamModel`.
- :mod:`.format`: the ``geocam.model/1`` file (save, read, load; never unpickled).
- :mod:`.networks`, :mod:`.resnet`: the networks (timm to train, a light ResNet to run).
- :mod:`.pretrained`: initial weights for training.
- :mod:`.eurosat`: EuroSAT's classes, bands, renderings and statistics.
"""

from .card import GeocamModel, ModelCard, Rendering
from .eurosat import (
    EUROSAT_CLASSES,
    EUROSAT_MS_BANDS,
    EUROSAT_MS_RENDERING,
    EUROSAT_RGB_RENDERING,
    RGB_BANDS,
    normalisation_for,
)
from .format import FORMAT, file_sha256, load_model, read_card, save_model
from .networks import build_inference_net, build_net
from .pretrained import (
    IMAGENET_URL,
    fetch_state_dict,
    hub_checkpoint_path,
    load_init_weights,
    load_weights_only,
    resolve_init_weights,
)

__all__ = (
    "EUROSAT_CLASSES",
    "EUROSAT_MS_BANDS",
    "EUROSAT_MS_RENDERING",
    "EUROSAT_RGB_RENDERING",
    "FORMAT",
    "IMAGENET_URL",
    "RGB_BANDS",
    "GeocamModel",
    "ModelCard",
    "Rendering",
    "build_inference_net",
    "build_net",
    "fetch_state_dict",
    "file_sha256",
    "hub_checkpoint_path",
    "load_init_weights",
    "load_model",
    "load_weights_only",
    "normalisation_for",
    "read_card",
    "resolve_init_weights",
    "save_model",
)
