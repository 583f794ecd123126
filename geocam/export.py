"""Export: polygons to GeoPackage (scene CRS) and GeoJSON (RFC 7946), the preview PNG and run.json.

Writers write the path they are given; the pipeline gives them names in a temporary folder and
moves finished files into place with ``os.replace``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import shapely
from rasterio.crs import CRS

from .polygonize import SalientPolygon

log = logging.getLogger(__name__)

COLUMNS = (
    "class",
    "class_id",
    "mean_activation",
    "max_activation",
    "mean_probability",
    "area_m2",
    "pixels",
)


def polygons_frame(polygons: Sequence[SalientPolygon], crs: CRS) -> gpd.GeoDataFrame:
    """A GeoDataFrame of salient polygons in the scene CRS.

    Args:
        polygons: merged polygons of every class.
        crs: the scene CRS.
    """
    data: dict[str, list[Any]] = {
        "class": [p.class_name for p in polygons],
        "class_id": [p.class_id for p in polygons],
        "mean_activation": [round(p.mean_activation, 4) for p in polygons],
        "max_activation": [round(p.max_activation, 4) for p in polygons],
        "mean_probability": [round(p.mean_probability, 4) for p in polygons],
        "area_m2": [round(p.area_m2, 1) for p in polygons],
        "pixels": [p.pixels for p in polygons],
    }
    frame = gpd.GeoDataFrame(
        data, geometry=[p.geometry for p in polygons], crs=crs.to_wkt() if crs else None
    )
    frame = frame.astype(
        {
            "class": "str",
            "class_id": "int32",
            "mean_activation": "float64",
            "max_activation": "float64",
            "mean_probability": "float64",
            "area_m2": "float64",
            "pixels": "int64",
        }
    )
    return frame


def write_gpkg(frame: gpd.GeoDataFrame, path: Path, layer: str = "salient") -> None:
    """Write polygons to a GeoPackage in their own CRS."""
    frame.to_file(path, driver="GPKG", layer=layer, engine="pyogrio", geometry_type="Polygon")


def write_geojson(frame: gpd.GeoDataFrame, path: Path) -> None:
    """Write polygons as RFC 7946 GeoJSON: EPSG:4326 lon/lat, counter-clockwise exteriors.

    Args:
        frame: polygons in any CRS.
        path: the ``.geojson`` file.
    """
    wgs84 = frame.to_crs(4326) if len(frame) else frame.set_crs(4326, allow_override=True)
    if len(wgs84):
        wgs84 = wgs84.set_geometry(
            shapely.orient_polygons(wgs84.geometry.values, exterior_cw=False)
        )
    wgs84.to_file(
        path,
        driver="GeoJSON",
        engine="pyogrio",
        layer_options={"RFC7946": "YES", "WRITE_BBOX": "YES"},
        geometry_type="Polygon",
    )


def write_json(data: Mapping[str, Any], path: Path) -> None:
    """Write a JSON document (sorted keys, 2-space indent)."""
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def _rgb01(colour: tuple[int, int, int]) -> tuple[float, float, float]:
    return colour[0] / 255.0, colour[1] / 255.0, colour[2] / 255.0


def write_preview(
    path: Path,
    rgb: npt.NDArray[np.uint8],
    classes: npt.NDArray[np.uint8],
    heat: npt.NDArray[np.float32],
    class_names: Sequence[str],
    colours: Sequence[tuple[int, int, int]],
    title: str,
) -> None:
    """Save the scene in true colour with the winning class's heat overlaid, plus a legend.

    The overlay colours each pixel by its winning class with opacity proportional to that
    class's scene-normalised CAM (``alpha = 0.75 * heat``), as CAM overlays usually do.

    Args:
        path: the PNG to write.
        rgb: ``(rows, cols, 3)`` uint8 true-colour image.
        classes: ``(rows, cols)`` uint8 class map (255 = nodata) at the same size.
        heat: ``(rows, cols)`` float32 normalised CAM of the winning class (NaN = nodata).
        class_names: class names in index order.
        colours: RGB colour per class.
        title: figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.patches import Patch

    palette = np.zeros((256, 3), dtype=np.float32)
    palette[: len(colours)] = np.asarray(colours, dtype=np.float32) / 255.0
    overlay = palette[classes]
    alpha = np.nan_to_num(heat, nan=0.0).clip(0, 1)[..., None] * 0.75
    alpha[classes == 255] = 0.0
    base = rgb.astype(np.float32) / 255.0
    blended = base * (1 - alpha) + overlay * alpha
    rows, cols = classes.shape
    width_in = 12.0
    height_in = max(3.0, width_in * rows / cols * 0.9 + 1.2)
    fig, ax = plt.subplots(figsize=(width_in, height_in), dpi=110)
    try:
        ax.imshow(blended, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
        present = set(np.unique(classes).tolist()) - {255}
        handles = [
            Patch(facecolor=_rgb01(colours[i]), label=name)
            for i, name in enumerate(class_names)
            if i in present
        ]
        if handles:
            ax.legend(
                handles=handles,
                loc="upper center",
                bbox_to_anchor=(0.5, -0.01),
                ncol=min(5, len(handles)),
                fontsize=8,
                frameon=False,
                title="winning class (opacity = scene-normalised CAM)",
                title_fontsize=8,
            )
        fig.savefig(path, format="png", bbox_inches="tight", pad_inches=0.15)
    finally:
        plt.close(fig)
