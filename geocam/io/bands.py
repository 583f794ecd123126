"""Which scene bands feed the model: by Sentinel-2 name, by ``--bands``, or by position."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from ..config import BandSpec
from ..errors import BandError, BandOrderWarning
from .scene import Scene

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BandMatch:
    """Which scene bands feed the model.

    Attributes:
        indexes: 0-based positions in ``Scene.bands`` in the model's channel order.
        how: ``"name"``, ``"--bands"`` or ``"position"``.
    """

    indexes: tuple[int, ...]
    how: str


def match_bands(scene: Scene, model_bands: Sequence[str], spec: BandSpec | None) -> BandMatch:
    """Decide which scene bands feed the model's input channels.

    Args:
        scene: the opened scene.
        model_bands: the model's Sentinel-2 band names in channel order.
        spec: an explicit mapping (``--bands``), or None to match by name.

    Returns:
        The matched scene band positions (0-based, model channel order).

    Raises:
        BandError: a model band is missing, an index is out of range, or the scene has no band
            names and a different band count than the model.
    """
    count = len(scene.bands)
    available = ", ".join(
        f"{i + 1}={b.name}" if b.name else str(i + 1) for i, b in enumerate(scene.bands)
    )

    def check_index(index: int) -> int:
        if not 1 <= index <= count:
            raise BandError(
                f"`bands` index {index} is out of range: the scene has {count} band(s) "
                f"({available})"
            )
        return index - 1

    wanted = ", ".join(model_bands)
    if spec is not None and spec.named:
        mapping = dict(spec.named)
        missing = [b for b in model_bands if b not in mapping]
        if missing:
            raise BandError(
                f"`bands`={spec} lacks model band(s) {', '.join(missing)}; the model needs "
                f"{wanted}: map each, e.g. {','.join(f'{b}=N' for b in model_bands)}"
            )
        extra = [b for b in mapping if b not in model_bands]
        if extra:
            raise BandError(
                f"`bands`={spec} maps band(s) {', '.join(extra)} that the model does not use "
                f"(it needs {wanted}); drop them, e.g. "
                f"{','.join(f'{b}={mapping[b]}' for b in model_bands)}"
            )
        return BandMatch(tuple(check_index(mapping[b]) for b in model_bands), "--bands")
    if spec is not None:
        if len(spec.positional) != len(model_bands):
            raise BandError(
                f"`bands`={spec} gives {len(spec.positional)} index(es) but the model needs "
                f"{len(model_bands)} ({wanted}); give one scene band per model band, in order"
            )
        return BandMatch(tuple(check_index(i) for i in spec.positional), "--bands")
    if count < len(model_bands):
        raise BandError(
            f"scene {scene.name!r} has {count} band(s) ({available}) but the model needs "
            f"{len(model_bands)} ({wanted}); give a scene (or the band files) with those bands"
        )
    names = [b.name for b in scene.bands]
    if any(names):
        missing = [b for b in model_bands if b not in names]
        if missing:
            raise BandError(
                f"scene {scene.name!r} lacks band(s) {', '.join(missing)} that the model needs "
                f"({wanted}); scene bands: {available}. Add them or map bands with --bands "
                f"{','.join(f'{b}=N' for b in model_bands)}"
            )
        indexes = tuple(names.index(b) for b in model_bands)
        if list(indexes) != sorted(indexes) or len(indexes) != count:
            log.info("scene bands %s reordered to the model's %s", indexes, wanted)
        return BandMatch(indexes, "name")
    if count == len(model_bands):
        warnings.warn(
            f"scene {scene.name!r} has no band names; its {count} bands are used in file order "
            f"as {wanted} (pass --bands to map them explicitly)",
            BandOrderWarning,
            stacklevel=2,
        )
        return BandMatch(tuple(range(count)), "position")
    raise BandError(
        f"scene {scene.name!r} has {count} unnamed band(s) but the model needs {wanted}; name "
        "the bands (band descriptions) or map them with --bands, e.g. "
        f"{','.join(f'{b}={i + 1}' for i, b in enumerate(model_bands))}"
    )
