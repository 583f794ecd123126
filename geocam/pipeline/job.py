"""One scene run's events, result and the state its stages share (:class:`Job`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import preflight
from ..cam import Engine
from ..config import SceneConfig
from ..model import GeocamModel
from ..project import SceneLayers
from ..provenance import Provenance
from ..radiometry import Radiometry
from ..runtime import StageHooks
from ..tiling import Block, iter_blocks
from .plan import GridPlan

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Progress:
    """A progress event.

    Attributes:
        scene: scene name.
        stage: ``"windows"`` (model pass) or ``"blocks"`` (normalisation and polygons).
        done: units finished so far; each stage starts with an event of ``done`` = 0.
        total: units in this stage.
    """

    scene: str
    stage: str
    done: int
    total: int


@dataclass(frozen=True, slots=True)
class SceneOutputs:
    """What a scene run wrote.

    Attributes:
        out_dir: the output folder.
        files: output kind (``"cam"``, ``"classes"``, ...) to path.
        windows: windows scored by the model.
        windows_skipped: windows skipped as mostly nodata.
        seconds: wall time of the whole run.
        model_seconds: time spent in the model.
        polygons: number of salient polygons.
        layers: what a QGIS project shows of the scene (for a batch's project).
    """

    out_dir: Path
    files: dict[str, Path]
    windows: int
    windows_skipped: int
    seconds: float
    model_seconds: float
    polygons: int
    layers: SceneLayers | None = None


@dataclass(slots=True)
class Timer:
    """Seconds per stage, and the run's start (``time.perf_counter()``)."""

    start: float
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, key: str, start: float) -> float:
        """Add the seconds since ``start`` to ``key``; return now."""
        now = time.perf_counter()
        self.seconds[key] = self.seconds.get(key, 0.0) + now - start
        return now


@dataclass(slots=True)
class Job:
    """One scene run's inputs and settings, shared by its stages."""

    plan: GridPlan
    model: GeocamModel
    engine: Engine
    config: SceneConfig
    tmp: Path
    timer: Timer
    provenance: Provenance
    out_dir: Path
    estimate: preflight.Estimate
    hooks: StageHooks

    @property
    def radiometry(self) -> Radiometry:
        """How the scene's DNs become reflectance (decided by the plan)."""
        assert self.plan.radiometry is not None
        return self.plan.radiometry

    @property
    def names(self) -> list[str]:
        """The model's class names."""
        return list(self.model.card.classes)

    @property
    def grid(self) -> dict[str, Any]:
        """The scene grid, as the raster writers take it."""
        s = self.plan.scene
        return {"crs": s.crs, "transform": s.transform, "shape_rc": s.shape_rc}

    def work(self, name: str) -> Path:
        """A work file in the run's temporary folder."""
        return self.tmp / f"work_{name}.tif"

    def blocks(self, tiles: bool = True) -> Iterator[Block]:
        """The output blocks, with the windows each owns (``tiles``) or none."""
        s = self.plan.scene
        plan = self.plan
        rows, cols = (plan.row_offsets, plan.col_offsets) if tiles else ((), ())
        return iter_blocks(
            s.height, s.width, self.config.block_px, rows, cols, plan.window_px, s.transform
        )
