"""Make data/sample/havel_crop.tif: a 512 x 384 px crop of the Havel Sentinel-2 L1C scene.

Reads ../shared/data/scenes/havel_s2l1c_20170216_13band_eurosat_order_10m.tif (13 bands in
EuroSAT order, uint16, EPSG:32633, 10 m) and keeps every band, the band descriptions and the
pixel values; the crop (rows 128-512, cols 960-1472) holds part of the Havel lakes, the river,
forest, fields and villages. Run from the repository root: ``python data/sample/make_sample.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import rasterio
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT.parent / "shared/data/scenes/havel_s2l1c_20170216_13band_eurosat_order_10m.tif"
TARGET = Path(__file__).resolve().parent / "havel_crop.tif"
WINDOW = Window(col_off=960, row_off=128, width=512, height=384)


def main() -> int:
    """Write the crop; returns the exit status."""
    if not SOURCE.exists():
        print(f"missing {SOURCE}", file=sys.stderr)  # noqa: T201
        return 1
    with rasterio.open(SOURCE) as src:
        data = src.read(window=WINDOW)
        profile = src.profile.copy()
        profile.update(
            width=WINDOW.width,
            height=WINDOW.height,
            transform=window_transform(WINDOW, src.transform),
            compress="deflate",
            predictor=2,
            zlevel=9,
            tiled=True,
            blockxsize=256,
            blockysize=128,
            interleave="pixel",
        )
        descriptions = src.descriptions
        tags = src.tags()
    tmp = TARGET.with_name(f".{TARGET.name}.tmp")
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data)
        for i, text in enumerate(descriptions, start=1):
            dst.set_band_description(i, text)
        dst.update_tags(
            **tags,
            SOURCE="havel_s2l1c_20170216_13band_eurosat_order_10m.tif rows 128-512 cols 960-1472",
            ATTRIBUTION="Contains modified Copernicus Sentinel data 2017",
        )
    tmp.replace(TARGET)
    print(f"wrote {TARGET} ({TARGET.stat().st_size} bytes)")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
