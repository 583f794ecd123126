"""Errors and warnings raised by geocam.

Errors subclass a builtin so callers can catch them generically (rasterio's ``CRSError(ValueError)``
pattern); every message names the parameter, the value it got, and how to fix the input.
"""


class GeocamError(Exception):
    """Base class of every geocam error."""


class ModelFormatError(GeocamError, ValueError):
    """A file is not a geocam model, or lacks a field a scene run needs."""


class WeightsNotFoundError(GeocamError, FileNotFoundError):
    """Pretrained weights are neither cached nor downloadable."""


class DatasetError(GeocamError, ValueError):
    """Training or evaluation data is missing or malformed."""


class SceneError(GeocamError, ValueError):
    """A scene cannot be read as a georeferenced raster (not a raster, no CRS, rotated...)."""


class BandError(GeocamError, ValueError):
    """The scene's bands cannot be matched to the model's input bands."""


class RadiometryError(GeocamError, ValueError):
    """A scene's values or ground resolution cannot be what the model reads."""


class TilingError(GeocamError, ValueError):
    """Window size or stride do not fit the scene."""


class ConfigError(GeocamError, ValueError):
    """A configuration value is invalid."""


class OutputError(GeocamError, OSError):
    """An output location cannot be written (unwritable, full, or clashing with an input)."""


class LimitError(GeocamError, ValueError):
    """A scene needs more work or memory than the run's limits allow (the preflight estimate)."""


class ResourceError(GeocamError, MemoryError):
    """The machine ran out of memory during a run."""


class GeocamWarning(UserWarning):
    """Base class of geocam's warnings for recoverable input."""


class BandOrderWarning(GeocamWarning):
    """Bands were matched by position or reordered to the model's order."""


class NodataWarning(GeocamWarning):
    """A scene has no nodata value; every pixel is treated as valid."""


class DiskSpaceWarning(GeocamWarning):
    """The output folder's free space may not hold a run's temporary files and outputs."""
