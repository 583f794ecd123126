"""Vector export: RFC 7946 GeoJSON from polygons in the scene CRS."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from pyproj import Transformer

from geocam.export import write_geojson


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
