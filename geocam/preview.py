"""The preview: the scene in true colour under the winning class's heat, gathered as a run goes.

The model pass keeps B04, B03 and B02 at the preview's scale from its own reads
(:meth:`PreviewGrid.add_rgb`), pass 2 the class map and the winning class's heat
(:meth:`PreviewGrid.add`); :func:`write_scene_preview` draws the PNG (Pillow, in
:func:`geocam.io.vectors.write_preview`). Scenes without those bands are read once more, subsampled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from affine import Affine
from rasterio.windows import Window

from .colours import class_colours
from .io.bands import BandMatch
from .io.reader import SceneReader
from .io.scene import Scene
from .io.vectors import write_image_georeference, write_preview
from .model import GeocamModel
from .radiometry import Radiometry
from .render import true_colour
from .stitch import NO_CLASS

#: Sentinel-2 bands of a true-colour image, red to blue.
TRUE_COLOUR = ("B04", "B03", "B02")


@dataclass(slots=True)
class PreviewGrid:
    """What the preview shows, at its scale, filled block by block.

    The class map, the winning class's heat and, when the model reads B04, B03 and B02, their
    digital numbers (kept from the model's reads, so the scene is not read twice).
    """

    step: int
    classes: npt.NDArray[np.uint8]
    heat: npt.NDArray[np.float32]
    rgb_dn: npt.NDArray[np.float32] | None = None
    rgb_valid: npt.NDArray[np.bool_] | None = None

    @classmethod
    def for_scene(cls, shape_rc: tuple[int, int], preview_px: int) -> PreviewGrid:
        """An empty grid whose longest edge is at most ``preview_px`` (a power-of-2 step)."""
        step = 1
        while max(shape_rc) / step > preview_px:
            step *= 2
        sub = (-(-shape_rc[0] // step), -(-shape_rc[1] // step))
        return cls(step, np.full(sub, NO_CLASS, np.uint8), np.full(sub, np.nan, np.float32))

    def _pick(self, origin_rc: tuple[int, int]) -> tuple[tuple[slice, slice], int, int]:
        """Slices taking every ``step``-th scene pixel of a block, and where they land.

        Args:
            origin_rc: the block's top-left pixel in the scene grid.
        """
        r0, c0 = origin_rc
        pick = (
            slice((-r0) % self.step, None, self.step),
            slice((-c0) % self.step, None, self.step),
        )
        return pick, -(-r0 // self.step), -(-c0 // self.step)

    def add(
        self,
        origin_rc: tuple[int, int],
        classes: npt.NDArray[np.uint8],
        heat: npt.NDArray[np.float32],
    ) -> None:
        """Keep a block's classes and winning-class heat at the preview's scale."""
        pick, pr, pc = self._pick(origin_rc)
        cls = classes[pick]
        if cls.size == 0:
            return
        idx = np.where(cls == NO_CLASS, 0, cls).astype(np.intp)[None]
        win = np.take_along_axis(heat[(slice(None), *pick)], idx, axis=0)[0]
        win[cls == NO_CLASS] = np.nan
        self.classes[pr : pr + cls.shape[0], pc : pc + cls.shape[1]] = cls
        self.heat[pr : pr + cls.shape[0], pc : pc + cls.shape[1]] = win

    def add_rgb(
        self,
        origin_rc: tuple[int, int],
        dn: npt.NDArray[np.float32],
        valid: npt.NDArray[np.bool_],
    ) -> None:
        """Keep a block's B04, B03, B02 digital numbers and validity at the preview's scale."""
        if self.rgb_dn is None or self.rgb_valid is None:
            self.rgb_dn = np.zeros((3, *self.classes.shape), np.float32)
            self.rgb_valid = np.zeros(self.classes.shape, bool)
        pick, pr, pc = self._pick(origin_rc)
        sub = valid[pick]
        self.rgb_dn[:, pr : pr + sub.shape[0], pc : pc + sub.shape[1]] = dn[(slice(None), *pick)]
        self.rgb_valid[pr : pr + sub.shape[0], pc : pc + sub.shape[1]] = sub


def stretch(dn: npt.NDArray[np.float32], valid: npt.NDArray[np.bool_]) -> npt.NDArray[np.uint8]:
    """Bands that are not true colour, each stretched from its 2nd to 98th percentile.

    Args:
        dn: ``(3, rows, cols)`` values.
        valid: ``(rows, cols)`` valid mask; invalid pixels are black.

    Returns:
        ``(rows, cols, 3)`` uint8.
    """
    out = np.zeros(dn.shape, dtype=np.uint8)
    for k in range(dn.shape[0]):
        vals = dn[k][valid]
        if vals.size:
            lo, hi = np.percentile(vals, (2, 98))
            out[k] = np.clip((dn[k] - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    out[:, ~valid] = 0
    return np.moveaxis(out, 0, -1)


def write_scene_preview(
    path: Path,
    scene: Scene,
    bands: BandMatch,
    model: GeocamModel,
    radiometry: Radiometry,
    grid: PreviewGrid,
) -> tuple[float, float, float, float]:
    """Draw the preview PNG from what ``grid`` gathered (reading the bands if it holds none).

    The PNG is georeferenced (a world file ``.pgw`` and ``.png.aux.xml`` beside it), so that it
    opens in place in QGIS: its title bar and legend lie outside the scene.

    Args:
        path: the PNG to write.
        scene: the scene.
        bands: the model's bands in the scene.
        model: the model (class names and colours, title).
        radiometry: how the scene's digital numbers become reflectance x 10000.
        grid: the class map, heat and, when the model reads them, true-colour bands.

    Returns:
        The PNG's extent (xmin, ymin, xmax, ymax) in the scene CRS.
    """
    if grid.rgb_dn is not None and grid.rgb_valid is not None:  # kept from the model's reads
        dn, valid, s2 = grid.rgb_dn, grid.rgb_valid, True
        positions = [bands.indexes[model.card.bands.index(b)] for b in TRUE_COLOUR]
    else:
        dn, valid, s2, positions = read_preview_bands(
            scene, bands, model, grid.step, grid.classes.shape
        )
    if s2:
        rgb = true_colour(dn, valid, radiometry, positions)
    else:
        rgb = stretch(dn, valid)
    top_px, (rows, cols) = write_preview(
        path,
        rgb,
        grid.classes,
        grid.heat,
        model.card.classes,
        class_colours(model.card.classes),
        title=f"{scene.name}: winning class, opacity = CAM (model {model.card.architecture}, "
        f"{model.sha256[:12]})",
    )
    transform = preview_transform(scene.transform, grid.step, top_px)
    write_image_georeference(path, transform, scene.crs)
    (x0, y0), (x1, y1) = transform @ (0, 0), transform @ (cols, rows)
    return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def preview_transform(scene_transform: Affine, step: int, top_px: int) -> Affine:
    """The preview image's grid: one pixel per ``step`` scene pixels, the scene ``top_px`` down.

    Args:
        scene_transform: the scene's north-up transform.
        step: scene pixels per preview pixel.
        top_px: image rows above the scene (the title bar).
    """
    return scene_transform @ Affine.scale(step) @ Affine.translation(0, -top_px)


def read_preview_bands(
    scene: Scene, bands: BandMatch, model: GeocamModel, step: int, shape_rc: tuple[int, int]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_], bool, list[int]]:
    """Read every ``step``-th pixel of three bands for the preview.

    Returns:
        The scene's B04, B03, B02 (else the model's first three bands), their validity,
        whether they are true colour, and their scene band positions (0-based).
    """
    names = list(scene.band_names)
    if all(b in names for b in TRUE_COLOUR):
        idx = [names.index(b) for b in TRUE_COLOUR]
        s2 = True
    else:
        idx = list(bands.indexes[:3]) if len(bands.indexes) >= 3 else [bands.indexes[0]] * 3
        s2 = tuple(model.card.bands[:3]) == TRUE_COLOUR
    dn = np.zeros((3, *shape_rc), dtype=np.float32)
    valid = np.zeros(shape_rc, dtype=bool)
    with SceneReader(scene, idx) as reader:
        for win in subsample_windows(scene.shape_rc, step):
            r, c = int(win.row_off) // step, int(win.col_off) // step
            block_dn, block_valid = reader.read(win)
            sub_dn = block_dn[:, ::step, ::step]
            dn[:, r : r + sub_dn.shape[1], c : c + sub_dn.shape[2]] = sub_dn
            valid[r : r + sub_dn.shape[1], c : c + sub_dn.shape[2]] = block_valid[::step, ::step]
    return dn, valid, s2, idx


def subsample_windows(shape_rc: tuple[int, int], step: int, block_px: int = 512) -> list[Window]:
    """Windows tiling a grid, each starting at a multiple of ``step`` (for strided previews).

    Args:
        shape_rc: (rows, cols) of the grid.
        step: subsampling step in pixels.
        block_px: approximate window edge in pixels (rounded up to a multiple of ``step``).
    """
    edge = step * -(-block_px // step)
    rows, cols = shape_rc
    return [
        Window(c, r, min(edge, cols - c), min(edge, rows - r))
        for r in range(0, rows, edge)
        for c in range(0, cols, edge)
    ]
