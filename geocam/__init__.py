"""geocam: where a land-cover classifier sees each class across whole satellite scenes."""

import logging

from .model import GeocamModel, ModelCard, load_model, save_model

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ("GeocamModel", "ModelCard", "__version__", "load_model", "save_model")
