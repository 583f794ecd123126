"""Windowed reads of a scene's bands, and its radiometry decided from a sample of them."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
import numpy.typing as npt
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from ..errors import SceneError
from ..radiometry import Radiometry, decide_radiometry, detect_level
from .bands import BandMatch
from .scene import Scene, open_raster

log = logging.getLogger(__name__)


class SceneReader:
    """Windowed reads of selected bands on the scene grid; a context manager owning the files.

    Args:
        scene: the opened scene.
        band_indexes: 0-based positions in ``scene.bands`` to read, in output order.
    """

    def __init__(self, scene: Scene, band_indexes: Sequence[int]) -> None:
        self.scene = scene
        self.band_indexes = tuple(band_indexes)
        self._stack = ExitStack()
        self._sources: dict[Path, Any] = {}
        self._float = False  # any band read is floating point: NaN and infinities are nodata

    def __enter__(self) -> Self:
        scene = self.scene
        try:
            for pos in self.band_indexes:
                band = scene.bands[pos]
                if band.path in self._sources:
                    continue
                src = self._stack.enter_context(open_raster(band.path))
                if (src.height, src.width) != scene.shape_rc or src.transform != scene.transform:
                    src = self._stack.enter_context(
                        WarpedVRT(
                            src,
                            crs=scene.crs,
                            transform=scene.transform,
                            width=scene.width,
                            height=scene.height,
                            resampling=Resampling.nearest,
                        )
                    )
                self._sources[band.path] = src
                self._float |= np.dtype(src.dtypes[band.index - 1]).kind == "f"
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.close()

    def read(self, window: Window) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
        """Read a window that may reach outside the scene.

        Args:
            window: pixel window in the scene grid (integer offsets; may be partly outside).

        Returns:
            Digital numbers ``(bands, rows, cols)`` float32 (0 outside the scene and where not
            finite) and the valid mask ``(rows, cols)`` bool: inside the scene, no band equal
            to nodata, and (float scenes) every band finite.

        Raises:
            SceneError: a file cannot be read there (damaged or missing tiles, I/O errors).
        """
        rows, cols = int(window.height), int(window.width)
        r0, c0 = int(window.row_off), int(window.col_off)
        dn = np.zeros((len(self.band_indexes), rows, cols), dtype=np.float32)
        valid = np.zeros((rows, cols), dtype=bool)
        rr0, cc0 = max(r0, 0), max(c0, 0)
        rr1 = min(r0 + int(window.height), self.scene.height)
        cc1 = min(c0 + int(window.width), self.scene.width)
        if rr1 <= rr0 or cc1 <= cc0:
            return dn, valid
        inner = Window(cc0, rr0, cc1 - cc0, rr1 - rr0)
        dst = (slice(rr0 - r0, rr1 - r0), slice(cc0 - c0, cc1 - c0))
        for k, pos in enumerate(self.band_indexes):
            band = self.scene.bands[pos]
            src = self._sources[band.path]
            try:
                dn[k][dst] = src.read(band.index, window=inner)
            except (RasterioError, OSError) as err:
                cause = err.__cause__ or err.__context__ or err
                raise SceneError(
                    f"`scene`={str(band.path)!r} cannot be read at rows {rr0}-{rr1}, columns "
                    f"{cc0}-{cc1} of band {band.index} ({str(cause).strip() or err}); the file is "
                    "damaged or incomplete: fetch or export it again"
                ) from err
        valid[dst] = True
        if self._float:
            finite = np.isfinite(dn)
            if not finite.all():
                valid &= finite.all(axis=0)
                dn[~finite] = 0.0
        if self.scene.nodata is not None and not np.isnan(self.scene.nodata):
            valid &= ~np.any(dn == np.float32(self.scene.nodata), axis=0)
        return dn, valid


def sample_valid(
    reader: SceneReader, windows_per_side: int = 8, window_px: int = 64
) -> npt.NDArray[np.float32]:
    """Valid digital numbers from windows spread evenly over the scene (for statistics).

    Args:
        reader: an entered reader of the bands to sample.
        windows_per_side: windows along each axis.
        window_px: window edge in pixels.

    Returns:
        ``(bands, n)`` float32: the valid pixels of every sampled window.
    """
    height, width = reader.scene.shape_rc
    rows = np.linspace(0, max(height - window_px, 0), windows_per_side).round().astype(int)
    cols = np.linspace(0, max(width - window_px, 0), windows_per_side).round().astype(int)
    parts = []
    for r in sorted(set(rows.tolist())):
        for c in sorted(set(cols.tolist())):
            dn, valid = reader.read(Window(c, r, min(window_px, width), min(window_px, height)))
            parts.append(dn[:, valid])
    return np.concatenate(parts, axis=1)


def scene_radiometry(
    scene: Scene,
    match: BandMatch,
    *,
    level: str | None = None,
    reflectance_scale: float | None = None,
    l2a_path_radiance: bool,
    dn_offset_declared: bool = False,
    check: bool = True,
) -> Radiometry:
    """Decide and check how the scene's digital numbers become reflectance x 10000.

    Reads a sample of the model's bands and hands it with what the files say (dtype, GDAL
    scale/offset, tags, product metadata, names) to :func:`geocam.radiometry.decide_radiometry`.

    Args:
        scene: the opened scene.
        match: the scene bands feeding the model.
        level: ``--level`` (``"L1C"`` or ``"L2A"``), or None to detect it.
        reflectance_scale: ``--reflectance-scale``, or None to detect it.
        dn_offset_declared: the scene's ``dn_offset`` was given by the user.
        l2a_path_radiance: make L2A scenes L1C-like (see ``decide_radiometry``).
        check: refuse implausible values.

    Raises:
        RadiometryError: see :func:`geocam.radiometry.decide_radiometry`.
    """
    detected = detect_level(
        level,
        scene.metadata_level,
        [str(p.resolve()) for p in scene.paths],
        scene.tags,
        scene.dn_offset_source,
    )
    with SceneReader(scene, match.indexes) as reader:
        sample = sample_valid(reader)
    radiometry = decide_radiometry(
        dtype=scene.dtype,
        positions=match.indexes,
        gdal_scales=[b.scale for b in scene.bands],
        gdal_offsets=[b.offset for b in scene.bands],
        declared_scale=reflectance_scale,
        dn_offset=scene.dn_offset,
        dn_offset_source=scene.dn_offset_source,
        dn_offset_declared=dn_offset_declared,
        level=detected,
        sample_dn=sample,
        band_names=scene.band_names,
        l2a_path_radiance=l2a_path_radiance,
        check=check,
    )
    log.info(
        "scene %s radiometry: %s, level %s (%s), scale from %s",
        scene.name,
        radiometry.kind,
        radiometry.level,
        radiometry.level_source,
        radiometry.scale_source,
    )
    return radiometry
