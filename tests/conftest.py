"""Shared fixtures: seeded synthetic Sentinel-2-like rasters and a tiny timm ResNet model file."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import timm
import torch
from affine import Affine
from timm.models import register_model
from timm.models.resnet import BasicBlock, ResNet

from geocam.model import (
    EUROSAT_CLASSES,
    EUROSAT_MS_BANDS,
    EUROSAT_RGB_RENDERING,
    RGB_BANDS,
    ModelCard,
    build_net,
    normalisation_for,
    save_model,
)

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).parents[1].parent / "shared"
HAVEL = SHARED / "data/scenes/havel_s2l1c_20170216_13band_eurosat_order_10m.tif"
HAVEL_JP2 = SHARED / "data/scenes/havel_s2l1c_T33UUU_20170216_jp2"
SAMPLE = REPO / "data/sample/havel_crop.tif"
REAL_MODEL = REPO / "data/models/geocam-resnet50-eurosat-rgb.safetensors"
TINY_ARCH = "geocam_tiny_resnet"


@register_model  # type: ignore[misc]
def geocam_tiny_resnet(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """A ~13k-parameter timm ResNet (same API as resnet50: forward_features, fc, 32x stride)."""
    kwargs.pop("pretrained_cfg", None)
    kwargs.pop("pretrained_cfg_overlay", None)
    kwargs.pop("cache_dir", None)
    return ResNet(BasicBlock, (1, 1, 1, 1), channels=(4, 8, 8, 8), **kwargs)


def synthetic_s2(shape_rc: tuple[int, int], seed: int = 0) -> np.ndarray:
    """13 bands of uint16 'reflectance x 10000' with a lake, a forest and fields (seeded)."""
    rng = np.random.default_rng(seed)
    rows, cols = shape_rc
    rr, cc = np.mgrid[0:rows, 0:cols]
    base = np.full((13, rows, cols), 1500.0) + rng.normal(0, 150, (13, rows, cols))
    lake = (rr - rows * 0.35) ** 2 + (cc - cols * 0.3) ** 2 < (min(rows, cols) * 0.25) ** 2
    forest = (cc > cols * 0.65) & (rr < rows * 0.6)
    base[:, lake] *= 0.35
    base[:, forest] *= 0.6
    return np.clip(base, 1, 10000).astype(np.uint16)


def write_raster(
    path: Path,
    data: np.ndarray,
    crs: Any = "EPSG:32633",
    transform: Affine | None = None,
    descriptions: tuple[str, ...] | None = tuple(EUROSAT_MS_BANDS),
    nodata: float | None = None,
) -> Path:
    transform = (
        transform if transform is not None else Affine(10.0, 0.0, 330000.0, 0.0, -10.0, 5822040.0)
    )
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "count": data.shape[0],
        "height": data.shape[1],
        "width": data.shape[2],
        "dtype": str(data.dtype),
        "transform": transform,
        "nodata": nodata,
    }
    if crs is not None:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if descriptions:
            for i, text in enumerate(descriptions[: data.shape[0]], start=1):
                dst.set_band_description(i, text)
    return path


@pytest.fixture
def s2_scene(tmp_path: Path) -> Path:
    """A 13-band 96 x 128 px uint16 GTiff, EPSG:32633, 10 m, EuroSAT band order and names."""
    return write_raster(tmp_path / "scene.tif", synthetic_s2((96, 128)))


@pytest.fixture
def make_scene(tmp_path: Path) -> Callable[..., Path]:
    """Factory for synthetic scenes: ``make_scene(name, shape_rc=..., **write_raster kwargs)``."""

    def make(name: str = "scene.tif", shape_rc: tuple[int, int] = (96, 128), seed: int = 0,
             data: np.ndarray | None = None, **kwargs: Any) -> Path:  # fmt: skip
        arr = synthetic_s2(shape_rc, seed) if data is None else data
        return write_raster(tmp_path / name, arr, **kwargs)

    return make


def tiny_card(window_px: int = 64) -> ModelCard:
    mean, std = normalisation_for(RGB_BANDS, True)
    return ModelCard(
        architecture=TINY_ARCH,
        classes=EUROSAT_CLASSES,
        bands=RGB_BANDS,
        rendering=EUROSAT_RGB_RENDERING,
        mean=mean,
        std=std,
        window_px=window_px,
    )


@pytest.fixture(scope="session")
def tiny_resnet() -> torch.nn.Module:
    """The seeded tiny network (3 bands, 10 classes), eval mode."""
    torch.manual_seed(0)
    net = build_net(TINY_ARCH, 3, len(EUROSAT_CLASSES))
    with torch.no_grad():  # a non-trivial head so classes differ
        net.get_classifier().weight.normal_(0, 1.0)
        net.get_classifier().bias.normal_(0, 0.1)
    return net.eval()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, tiny_resnet: torch.nn.Module) -> Path:
    """The tiny network saved as a geocam model file (float32)."""
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_model(path, tiny_resnet, tiny_card(), dtype=torch.float32)
    return path


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 13-band 96 x 128 px scene shared by a test module (the fault-injection tests)."""
    return write_raster(tmp_path_factory.mktemp("scene") / "scene.tif", synthetic_s2((96, 128)))


@pytest.fixture(scope="module")
def reference(scene: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``clean``: a run of ``faults.CONFIG`` on ``scene``; ``old``: an older set it replaces."""
    from helpers import CONFIG, OLD

    from geocam import run_scene

    root = tmp_path_factory.mktemp("ref")
    run_scene(scene, tiny_model, root / "clean", CONFIG)
    run_scene(scene, tiny_model, root / "old", OLD)
    return root


def count_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


__all__ = ["HAVEL", "HAVEL_JP2", "REAL_MODEL", "SAMPLE", "SHARED", "timm", "write_raster"]


@pytest.fixture
def worker_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Environment of Dask workers that know the tiny test architecture (``dask_preload``)."""
    import dask

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), *sys.path]))
    monkeypatch.setenv("DASK_DISTRIBUTED__WORKER__PRELOAD", '["dask_preload"]')
    # LocalCluster's workers take the client's configuration; `dask worker` reads the variable.
    with dask.config.set({"distributed.worker.preload": ["dask_preload"]}):
        yield dict(os.environ)
