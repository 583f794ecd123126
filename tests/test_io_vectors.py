"""Export: RFC 7946 GeoJSON, the GeoPackage (version, provenance, QGIS style, ids), world files."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from pyproj import Transformer
from rasterio.crs import CRS

from geocam.io.vectors import write_geojson


def _signed_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return float(np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]) / 2)


def test_geojson_is_wgs84_lon_lat_with_right_hand_rings(tmp_path: Path) -> None:
    # A clockwise shell with a counter-clockwise hole (the opposite of RFC 7946), in UTM 33N.
    shell = [(330000, 5822000), (330000, 5823000), (331000, 5823000), (331000, 5822000)]
    hole = [(330200, 5822200), (330400, 5822200), (330400, 5822400), (330200, 5822400)]
    polygon = shapely.Polygon(shell, [hole])
    frame = gpd.GeoDataFrame({"class": ["Forest"]}, geometry=[polygon], crs="EPSG:32633")
    write_geojson(frame, tmp_path / "p.geojson")
    doc = json.loads((tmp_path / "p.geojson").read_text())
    assert "crs" not in doc and doc["features"][0]["properties"] == {"class": "Forest"}
    rings = [np.asarray(r) for r in doc["features"][0]["geometry"]["coordinates"]]
    assert _signed_area(rings[0]) > 0 > _signed_area(rings[1])  # exterior CCW, hole CW
    to_wgs84 = Transformer.from_crs(32633, 4326, always_xy=True)
    for ring, src in zip(rings, (shell, hole), strict=True):
        lon, lat = to_wgs84.transform(*np.asarray(src, dtype=float).T)
        got = {(round(x, 6), round(y, 6)) for x, y in ring}
        assert got == {(round(x, 6), round(y, 6)) for x, y in zip(lon, lat, strict=True)}


def test_geojson_needs_a_crs(tmp_path: Path) -> None:
    frame = gpd.GeoDataFrame({"class": ["Forest"]}, geometry=[shapely.box(0, 0, 1, 1)])
    with pytest.raises(ValueError, match="CRS"):
        write_geojson(frame, tmp_path / "p.geojson")


def test_gpkg_version_metadata_style_and_ids(tmp_path: Path) -> None:
    import sqlite3

    import pyogrio

    from geocam.io.vectors import polygons_frame, write_gpkg
    from geocam.polygonize import SalientPolygon

    polygons = [
        SalientPolygon(i % 2, ("Water", "Forest")[i % 2],
                       shapely.box(330000 + 100 * i, 5822000, 330050 + 100 * i, 5822050), 25,
                       0.6, 0.9, 0.7, 2500.0)
        for i in range(3)
    ]  # fmt: skip
    frame = polygons_frame(polygons, CRS.from_epsg(32633))
    path = tmp_path / "p.gpkg"
    date = "2017-02-16T10:00:00.000Z"
    write_gpkg(frame, path, metadata={"GEOCAM_SCENE": "s"}, description="d",
               style_qml="<qgis/>", date=date)  # fmt: skip
    with sqlite3.connect(path) as db:
        assert db.execute("pragma user_version").fetchone() == (10200,)  # GeoPackage 1.2
        style = db.execute(
            "select f_table_name, f_geometry_column, useAsDefault, styleQML, update_time "
            "from layer_styles"
        ).fetchall()
        contents = db.execute("select table_name, description, last_change from gpkg_contents")
        assert ("salient", "d", date) in contents.fetchall()
    assert style == [("salient", "geom", 1, "<qgis/>", date)]
    assert pyogrio.read_info(path, layer="salient")["layer_metadata"]["GEOCAM_SCENE"] == "s"
    back = pyogrio.read_dataframe(path, layer="salient", fid_as_index=True)
    assert back.index.tolist() == [1, 2, 3] and back["class"].tolist() == [
        "Water",
        "Forest",
        "Water",
    ]
    write_geojson(frame, tmp_path / "p.geojson")
    features = json.loads((tmp_path / "p.geojson").read_text())["features"]
    assert [f["id"] for f in features] == [1, 2, 3]
    assert "fid" not in features[0]["properties"]


def test_image_georeference_is_read_by_gdal(tmp_path: Path) -> None:
    import rasterio
    from affine import Affine
    from PIL import Image

    from geocam.io.vectors import write_image_georeference

    png = tmp_path / "preview.png"
    Image.new("RGB", (40, 30)).save(png)
    transform = Affine(20.0, 0, 330000.0, 0, -20.0, 5822000.0)
    world, aux = write_image_georeference(png, transform, CRS.from_epsg(32633))
    assert world.name == "preview.pgw" and aux.name == "preview.png.aux.xml"
    assert world.read_text().split() == ["20.0", "0.0", "0.0", "-20.0", "330010.0", "5821990.0"]
    aux.unlink()  # the world file alone places the image
    with rasterio.open(png) as src:
        assert src.transform == transform
    write_image_georeference(png, transform, CRS.from_epsg(32633))
    world.unlink()  # the sidecar alone places it, with its CRS
    with rasterio.open(png) as src:
        assert src.transform == transform and src.crs.to_epsg() == 32633
