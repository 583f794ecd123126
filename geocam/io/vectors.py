"""Export: polygons to GeoPackage (scene CRS) and GeoJSON (RFC 7946), the preview PNG, run.json.

Also the text outputs (QGIS styles and project) and the preview's georeferencing. Writers write
the path they are given; the pipeline gives them names in a temporary folder and moves finished
files into place with ``os.replace``.

geopandas, pandas and pyogrio (which brings its own GDAL) are imported where they are used: a
scene run needs them only after the model pass, so they do not add to its peak memory.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

import numpy as np
import numpy.typing as npt
from affine import Affine
from rasterio.crs import CRS

from ..polygonize import SalientPolygon

if TYPE_CHECKING:
    import geopandas as gpd

log = logging.getLogger(__name__)

#: Rows of the preview blended at a time.
PREVIEW_CHUNK_ROWS = 128

#: GeoPackage version: 1.2 is what GDAL up to 3.6 (QGIS 3.22 LTR) writes and reads without a
#: warning; GDAL 3.7+ writes 1.4 by default.
GPKG_VERSION = "1.2"


def polygons_frame(polygons: Sequence[SalientPolygon], crs: CRS) -> gpd.GeoDataFrame:
    """A GeoDataFrame of salient polygons in the scene CRS.

    ``fid`` (1, 2, ...) becomes the GeoPackage's feature id and the GeoJSON features' ``id``.

    Args:
        polygons: merged polygons of every class.
        crs: the scene CRS.
    """
    import geopandas as gpd

    data: dict[str, list[Any]] = {
        "fid": list(range(1, len(polygons) + 1)),
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
            "fid": "int64",
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


@contextmanager
def ogr_config(**options: str) -> Iterator[None]:
    """Set pyogrio's GDAL configuration options for a block; restore the previous values."""
    import pyogrio

    previous = {k: pyogrio.get_gdal_config_option(k) for k in options}
    pyogrio.set_gdal_config_options(options)
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options(previous)


def write_gpkg(
    frame: gpd.GeoDataFrame,
    path: Path,
    layer: str = "salient",
    metadata: Mapping[str, str] | None = None,
    description: str = "",
    style_qml: str | None = None,
    date: str | None = None,
) -> None:
    """Write polygons to a GeoPackage (version :data:`GPKG_VERSION`) in their own CRS.

    Args:
        frame: polygons; a ``fid`` column becomes the feature id.
        path: the ``.gpkg`` file.
        layer: table name.
        metadata: provenance items, stored for the file and the table (``gpkg_metadata``).
        description: the table's description (``gpkg_contents``).
        style_qml: a QGIS style stored as the table's default in ``layer_styles``, QGIS's own
            table, so that the GeoPackage alone opens styled.
        date: GeoPackage DATETIME (``2017-02-16T10:00:00.000Z``) written as the table's last
            change and the style's update time instead of the clock (reruns stay identical).
    """
    import pandas as pd
    import pyogrio

    items = dict(metadata or {})
    options = {"OGR_CURRENT_DATE": date} if date else {}
    with ogr_config(**options):
        pyogrio.write_dataframe(
            frame,
            path,
            layer=layer,
            driver="GPKG",
            geometry_type="Polygon",
            dataset_options={"VERSION": GPKG_VERSION},
            dataset_metadata=items or None,
            layer_options={"DESCRIPTION": description, "FID": "fid"},
            layer_metadata=items or None,
        )
        if style_qml is not None:
            geometry_column = pyogrio.read_info(path, layer=layer)["geometry_name"] or "geom"
            styles = pd.DataFrame(
                {
                    "f_table_catalog": [""],
                    "f_table_schema": [""],
                    "f_table_name": [layer],
                    "f_geometry_column": [geometry_column],
                    "styleName": [layer],
                    "styleQML": [style_qml],
                    "styleSLD": [""],
                    "useAsDefault": [True],
                    "description": [description],
                    "owner": [""],
                    "ui": [""],
                    "update_time": [pd.Timestamp(date or "1970-01-01T00:00:00Z")],
                }
            )
            pyogrio.write_dataframe(
                styles,
                path,
                layer="layer_styles",
                driver="GPKG",
                append=True,
                layer_options={"DATETIME_PRECISION": "MILLISECOND"},
            )


def write_geojson(frame: gpd.GeoDataFrame, path: Path) -> None:
    """Write polygons as RFC 7946 GeoJSON: EPSG:4326 lon/lat, counter-clockwise exteriors.

    GDAL's GeoJSON driver reprojects and orients each feature as it writes it (``RFC7946=YES``),
    so no reprojected copy of the polygons is made.

    Args:
        frame: polygons in their CRS.
        path: the ``.geojson`` file.

    Raises:
        ValueError: the frame has no CRS (GeoJSON needs lon/lat).
    """
    if frame.crs is None:
        raise ValueError("polygons without a CRS cannot be written as RFC 7946 GeoJSON")
    options = {"RFC7946": "YES", "WRITE_BBOX": "YES"}
    if "fid" in frame.columns:  # the feature ids, equal to the GeoPackage's
        options.update(ID_FIELD="fid", ID_TYPE="Integer")
    frame.to_file(
        path, driver="GeoJSON", engine="pyogrio", layer_options=options, geometry_type="Polygon"
    )


def write_text(path: Path, text: str) -> None:
    """Write a text output (QGIS style or project), UTF-8."""
    path.write_text(text, encoding="utf-8")


def write_image_georeference(
    image: Path, transform: Affine, crs: CRS, world_suffix: str = ".pgw"
) -> list[Path]:
    """Georeference an image: a world file and a GDAL ``.aux.xml`` sidecar with the CRS.

    GDAL (and QGIS through it) reads both; the world file alone serves tools that know no CRS.

    Args:
        image: the image file (``preview.png``).
        transform: its pixel grid (north-up) in ``crs``.
        crs: the CRS.
        world_suffix: the world file's suffix (``.pgw`` for PNG).

    Returns:
        The world file and the sidecar.
    """
    world = image.with_suffix(world_suffix)
    # A world file places the centre of the top-left pixel.
    centre = transform @ (0.5, 0.5)
    values = (transform.a, transform.d, transform.b, transform.e, centre[0], centre[1])
    world.write_text("".join(f"{v!r}\n" for v in values))
    aux = Path(f"{image}.aux.xml")
    geo = ", ".join(repr(v) for v in transform.to_gdal())
    aux.write_text(
        "<PAMDataset>\n"
        f"  <SRS>{escape(crs.to_wkt())}</SRS>\n"
        f"  <GeoTransform>{geo}</GeoTransform>\n"
        "</PAMDataset>\n"
    )
    return [world, aux]


def strict_json(value: Any) -> Any:  # noqa: ANN401 - any JSON-like data
    """A copy of JSON-like data with NaN and infinities as None (strict JSON has neither)."""
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    return value


def write_json(data: Mapping[str, Any], path: Path) -> None:
    """Write a strict JSON document (sorted keys, 2-space indent; NaN and infinities as null)."""
    text = json.dumps(strict_json(data), indent=2, sort_keys=True, default=str, allow_nan=False)
    path.write_text(text + "\n")


def write_preview(
    path: Path,
    rgb: npt.NDArray[np.uint8],
    classes: npt.NDArray[np.uint8],
    heat: npt.NDArray[np.float32],
    class_names: Sequence[str],
    colours: Sequence[tuple[int, int, int]],
    title: str,
) -> tuple[int, tuple[int, int]]:
    """Save the scene in true colour with the winning class's heat overlaid, plus a legend.

    The overlay colours each pixel by its winning class with opacity proportional to that
    class's scene-normalised CAM (``alpha = 0.75 * heat``), as CAM overlays usually do. The
    image keeps one output pixel per input pixel; a title bar and a legend of the classes present
    frame it. Drawn with Pillow (lighter and faster than matplotlib for this).

    Args:
        path: the PNG to write.
        rgb: ``(rows, cols, 3)`` uint8 true-colour image.
        classes: ``(rows, cols)`` uint8 class map (255 = nodata) at the same size.
        heat: ``(rows, cols)`` float32 normalised CAM of the winning class (NaN = nodata).
        class_names: class names in index order.
        colours: RGB colour per class.
        title: title line.

    Returns:
        The image row where the scene starts (under the title bar), for georeferencing, and the
        image's (rows, cols).
    """
    from PIL import Image, ImageDraw, ImageFont

    palette = np.zeros((256, 3), dtype=np.float32)
    palette[: len(colours)] = np.asarray(colours, dtype=np.float32)
    rows, cols = classes.shape
    blended = np.empty((rows, cols, 3), dtype=np.uint8)
    for r in range(0, rows, PREVIEW_CHUNK_ROWS):  # a few float rows at a time: memory stays small
        part = slice(r, r + PREVIEW_CHUNK_ROWS)
        alpha = np.nan_to_num(heat[part], nan=0.0).clip(0, 1)[..., None] * np.float32(0.75)
        alpha[classes[part] == 255] = 0.0
        mix = rgb[part] * (1 - alpha) + palette[classes[part]] * alpha
        np.rint(mix, out=mix)
        blended[part] = mix
    font = ImageFont.load_default(size=14)
    line_px, pad_px, swatch_px = 20, 8, 14
    present = [i for i in np.unique(classes).tolist() if i != 255 and i < len(class_names)]
    labels = [(i, class_names[i], int(font.getlength(class_names[i]))) for i in present]
    # Lay the legend out in rows that fit the image width.
    legend_rows: list[list[tuple[int, str, int]]] = [[]]
    used = pad_px
    for item in labels:
        need = swatch_px + 6 + item[2] + 18
        if legend_rows[-1] and used + need > max(cols, 320):
            legend_rows.append([])
            used = pad_px
        legend_rows[-1].append(item)
        used += need
    width = max(cols, 320)
    top = line_px + pad_px
    height = top + rows + pad_px + line_px * (len(legend_rows) + 1)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    canvas.paste(Image.fromarray(blended, "RGB"), (0, top))
    draw = ImageDraw.Draw(canvas)
    draw.text((pad_px, pad_px // 2), title, fill=(0, 0, 0), font=font)
    y = top + rows + pad_px
    draw.text(
        (pad_px, y), "winning class (opacity = scene-normalised CAM)", fill=(60, 60, 60), font=font
    )
    for row in legend_rows:
        y += line_px
        x = pad_px
        for i, name, text_px in row:
            draw.rectangle((x, y + 2, x + swatch_px, y + 2 + swatch_px), fill=tuple(colours[i]))
            draw.text((x + swatch_px + 6, y), name, fill=(0, 0, 0), font=font)
            x += swatch_px + 6 + text_px + 18
    canvas.save(path, format="PNG", compress_level=1)  # faster than 3, hardly larger
    return top, (height, width)
