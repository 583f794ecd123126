"""geocam: where a land-cover classifier sees each class across whole satellite scenes."""

import logging

from .config import SceneConfig
from .model import GeocamModel, ModelCard, load_model, save_model
from .pipeline import run_scene

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = (
    "GeocamModel",
    "ModelCard",
    "SceneConfig",
    "__version__",
    "load_model",
    "run_scene",
    "save_model",
)
