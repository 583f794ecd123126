from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS

from geocam.polygonize import (
    area_m2,
    block_pieces,
    merge_pieces,
    row_areas_m2,
    salient_mask,
    sieve_mask,
)

UTM = CRS.from_epsg(32633)
T = Affine(10, 0, 330000, 0, -10, 5822040)


def test_salient_mask_rule() -> None:
    heat = np.array([[0.9, 0.9, 0.4, np.nan]], np.float32)
    prob = np.array([[0.1, 0.8, 0.9, 0.9]], np.float32)
    classes = np.array([[3, 1, 3, 255]], np.uint8)
    assert salient_mask(heat, prob, classes, 3, 0.5, 0.5).tolist() == [[True, True, False, False]]


def test_sieve_removes_specks_and_fills_holes() -> None:
    mask = np.zeros((20, 20), bool)
    mask[2:12, 2:12] = True
    mask[5, 5] = False  # a 1-px hole
    mask[17, 17] = True  # a 1-px speck
    out = sieve_mask(mask, 4)
    assert out[5, 5] and not out[17, 17] and out[2:12, 2:12].all()


@pytest.mark.parametrize("seed", range(6))
def test_sieve_of_bounding_box_equals_sieve_of_whole_mask(seed: int) -> None:
    from rasterio.features import sieve

    rng = np.random.default_rng(seed)
    mask = np.zeros((64, 64), bool)
    r, c = rng.integers(0, 48, 2)
    mask[r : r + 16, c : c + 16] = rng.random((16, 16)) < 0.6  # specks, holes, small blobs
    whole = sieve(mask.astype(np.uint8), size=6, connectivity=4) > 0
    assert np.array_equal(sieve_mask(mask, 6), whole)


def test_block_pieces_stats() -> None:
    mask = np.zeros((10, 10), bool)
    mask[1:4, 1:5] = True
    mask[7:9, 7:9] = True
    heat = np.full((10, 10), 0.5, np.float32)
    heat[1, 1] = 1.0
    prob = np.full((10, 10), 0.7, np.float32)
    pieces = sorted(block_pieces(mask, heat, prob, T), key=lambda p: -p.pixels)
    assert [p.pixels for p in pieces] == [12, 4]
    assert pieces[0].max_activation == 1.0
    assert pieces[0].sum_activation == pytest.approx(11 * 0.5 + 1.0)
    assert pieces[0].geometry.area == pytest.approx(12 * 100)
    assert pieces[1].sum_probability == pytest.approx(4 * 0.7)


def test_merge_across_block_seam() -> None:
    mask = np.zeros((10, 20), bool)
    mask[2:6, 4:16] = True  # crosses the seam at column 10
    heat = np.ones((10, 20), np.float32)
    prob = np.full((10, 20), 0.6, np.float32)
    left = block_pieces(mask[:, :10], heat[:, :10], prob[:, :10], T)
    right = block_pieces(mask[:, 10:], heat[:, 10:], prob[:, 10:], T @ Affine.translation(10, 0))
    merged = merge_pieces(left + right, 8, "River", UTM, simplify_tolerance=10.0)
    assert len(merged) == 1
    (poly,) = merged
    assert poly.pixels == 48 and poly.class_name == "River" and poly.class_id == 8
    assert poly.mean_probability == pytest.approx(0.6) and poly.mean_activation == pytest.approx(
        1.0
    )
    assert poly.area_m2 == pytest.approx(4800.0)
    assert poly.geometry.is_valid


def test_simplified_polygons_are_valid_and_disjoint() -> None:
    rng = np.random.default_rng(3)
    mask = sieve_mask(rng.random((60, 60)) > 0.45, 8)
    heat = rng.random((60, 60)).astype(np.float32)
    pieces = block_pieces(mask, heat, heat, T)
    merged = merge_pieces(pieces, 0, "AnnualCrop", UTM, simplify_tolerance=10.0)
    geoms = [m.geometry for m in merged]
    assert all(g.is_valid for g in geoms)
    union = shapely.union_all(geoms)
    assert union.area == pytest.approx(sum(g.area for g in geoms), rel=1e-9)  # no overlaps
    assert sum(m.pixels for m in merged) == int(mask.sum())


def test_area_geographic_matches_utm() -> None:
    square = shapely.box(400000, 5800000, 401000, 5801000)  # 1 km^2 in UTM 33N
    to_wgs = Transformer.from_crs(32633, 4326, always_xy=True)
    dense = shapely.segmentize(square, 10)
    lonlat = shapely.transform(
        dense, lambda xy: np.column_stack(to_wgs.transform(xy[:, 0], xy[:, 1]))
    )
    (utm_area,) = area_m2([square], UTM)
    (geo_area,) = area_m2([lonlat], CRS.from_epsg(4326))
    assert utm_area == pytest.approx(1e6)
    # UTM areas carry the projection's scale error (k ~ 0.9997 here): within 0.2 %
    assert geo_area == pytest.approx(1e6, rel=2e-3)


@pytest.mark.parametrize("block", [7, 16, 25])
def test_blockwise_pieces_merge_like_whole_mask(block: int) -> None:
    rng = np.random.default_rng(block)
    mask = sieve_mask(rng.random((50, 60)) > 0.5, 6)
    heat = rng.random((50, 60)).astype(np.float32)
    whole = merge_pieces(block_pieces(mask, heat, heat, T), 0, "A", UTM, 0.0)
    pieces = []
    for r in range(0, 50, block):
        for c in range(0, 60, block):
            sub = (slice(r, r + block), slice(c, c + block))
            pieces += block_pieces(mask[sub], heat[sub], heat[sub], T @ Affine.translation(c, r))
    merged = merge_pieces(pieces, 0, "A", UTM, 0.0)
    assert len(merged) == len(whole)
    assert sorted(m.pixels for m in merged) == sorted(m.pixels for m in whole)
    assert sum(m.area_m2 for m in merged) == pytest.approx(mask.sum() * 100)
    assert sorted(round(m.mean_activation, 6) for m in merged) == sorted(
        round(m.mean_activation, 6) for m in whole
    )


def test_pieces_know_whether_they_reach_the_block_border() -> None:
    mask = np.zeros((10, 10), bool)
    mask[3:6, 3:6] = True  # inside
    mask[0:2, 7:10] = True  # top-right corner
    heat = np.ones((10, 10), np.float32)
    pieces = block_pieces(mask, heat, heat, T)
    assert sorted((p.pixels, p.on_edge) for p in pieces) == [(6, True), (9, False)]


def test_union_of_touching_groups_equals_the_union_of_all():
    from geocam.polygonize import _union_touching

    squares = [shapely.box(x, y, x + 1, y + 1) for x, y in [(0, 0), (1, 0), (5, 5), (6, 6), (9, 0)]]
    squares.append(shapely.box(2, 0, 3, 1).buffer(0))  # touches (1, 0): one group of three
    geoms = np.array(squares, dtype=object)
    parts = _union_touching(geoms)
    assert all(isinstance(p, shapely.Polygon) and p.is_valid for p in parts)
    assert shapely.union_all(parts).equals(shapely.union_all(geoms))
    # (0..3, 0..1) is one part; the corner-touching squares stay two parts, as union_all gives.
    assert sorted(round(p.area) for p in parts) == [1, 1, 1, 3]


def test_simplifying_by_groups_equals_simplifying_all_at_once() -> None:
    from rasterio.features import shapes

    from geocam.polygonize import simplify_polygons

    # A coverage of a random label image: neighbours share edges, nested bounds, lone specks.
    rng = np.random.default_rng(5)
    labels = (rng.random((80, 80)) * 6).astype(np.int32)
    labels[rng.random((80, 80)) > 0.7] = 0
    parts = [shapely.geometry.shape(g) for g, v in shapes(labels, transform=T, connectivity=4)]
    parts = [p for p in parts if p.area > 0]
    assert len(parts) > 100
    expected = shapely.coverage_simplify(np.array(parts, dtype=object), 15.0)
    got = simplify_polygons(parts, 15.0)
    assert all(shapely.equals_exact(g, e, 0.0) for g, e in zip(got, expected, strict=True))


def test_row_areas_projected_and_geographic() -> None:
    utm = row_areas_m2(Affine(10, 0, 330000, 0, -10, 5822000), CRS.from_epsg(32633), 3)
    assert utm.tolist() == [100.0, 100.0, 100.0]
    # 0.1 degree cells from 60 N to the equator: they grow southwards and add up to the strip
    wgs84 = CRS.from_epsg(4326)
    geo = row_areas_m2(Affine(0.1, 0, 10, 0, -0.1, 60.0), wgs84, 600)
    assert np.all(np.diff(geo) > 0)
    assert geo.sum() == pytest.approx(area_m2([shapely.box(10, 0, 10.1, 60)], wgs84)[0], rel=1e-6)
