"""EuroSAT training data: the RGB JPEG release and the 13-band GeoTIFFs, as TorchGeo datasets.

Two sources, one datamodule:

* the EuroSAT RGB JPEGs in their ImageFolder layout (``<root>/<Class>/<Class>_<n>.jpg``), read
  through TorchGeo's :class:`~torchgeo.datasets.NonGeoClassificationDataset`, restricted to a
  split given as a CSV (a ``Filename`` column) or a list file (one name per line);
* the EuroSAT MS GeoTIFFs through TorchGeo's :class:`~torchgeo.datasets.EuroSAT` (its own
  layout and ``eurosat-{train,val,test}.txt`` split files), with any band subset.

Augmentation (flips and 90 degree rotations, exact) and normalisation run on the batch after it
reaches the device, as in TorchGeo's datamodules.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchgeo.datamodules import NonGeoDataModule
from torchgeo.datasets import EuroSAT, NonGeoClassificationDataset

from ..errors import DatasetError
from ..model import (
    EUROSAT_CLASSES,
    EUROSAT_MS_BANDS,
    EUROSAT_MS_RENDERING,
    EUROSAT_RGB_RENDERING,
    RGB_BANDS,
    Rendering,
    normalisation_for,
)
from .augment import RadiometricJitter, radiometric_jitter

Sample = dict[str, Any]


@dataclass(frozen=True, slots=True)
class DataSpec:
    """Where training data lives and how it is rendered.

    Attributes:
        source: ``"rgb"`` (EuroSAT RGB JPEGs, ImageFolder) or ``"ms"`` (torchgeo ``EuroSAT``).
        root: dataset root directory.
        splits: split name -> split file (``rgb`` only; ``ms`` uses torchgeo's split files).
        bands: Sentinel-2 band names in channel order.
    """

    source: str
    root: Path
    splits: dict[str, Path | None]
    bands: tuple[str, ...]

    @property
    def rendering(self) -> Rendering:
        """How scene digital numbers map to this data's values."""
        return EUROSAT_RGB_RENDERING if self.source == "rgb" else EUROSAT_MS_RENDERING

    @property
    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-band normalisation in rendered units."""
        return normalisation_for(self.bands, rgb8=self.source == "rgb")


def rgb_spec(root: Path, split_dir: Path | None) -> DataSpec:
    """Spec for the EuroSAT RGB JPEGs with ``train/validation/test`` files in ``split_dir``.

    Each split is ``<split_dir>/<name>.csv`` or ``<name>.txt``; ``validation`` may also be named
    ``val``. Without ``split_dir`` every image is in every split (for quick experiments only).
    """
    splits: dict[str, Path | None] = {}
    for split, names in {
        "train": ("train",),
        "val": ("validation", "val"),
        "test": ("test",),
    }.items():
        splits[split] = _find_split_file(split_dir, names) if split_dir else None
    return DataSpec("rgb", Path(root), splits, RGB_BANDS)


def ms_spec(root: Path, bands: Sequence[str] | None = None) -> DataSpec:
    """Spec for torchgeo's 13-band ``EuroSAT`` under ``root`` with a band subset (default all)."""
    chosen = tuple(bands) if bands else EUROSAT_MS_BANDS
    unknown = [b for b in chosen if b not in EUROSAT_MS_BANDS]
    if unknown:
        raise DatasetError(f"`bands` has {unknown}, not EuroSAT MS bands {EUROSAT_MS_BANDS}")
    return DataSpec("ms", Path(root), {"train": None, "val": None, "test": None}, chosen)


def _find_split_file(split_dir: Path, names: Sequence[str]) -> Path:
    for name in names:
        for ext in (".csv", ".txt"):
            candidate = Path(split_dir) / f"{name}{ext}"
            if candidate.is_file():
                return candidate
    raise DatasetError(
        f"`split_dir`={str(split_dir)!r} has no {names[0]}.csv or {names[0]}.txt; "
        "give a folder with train/validation/test split files"
    )


def read_split(path: Path) -> set[str]:
    """File stems listed in a split file.

    Args:
        path: a CSV with a ``Filename`` column (relative paths) or a text file with one file name
            per line. Names are compared by stem, so a ``.tif`` list selects the same ``.jpg``.
    """
    path = Path(path)
    if path.suffix == ".csv":
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or "Filename" not in reader.fieldnames:
                raise DatasetError(
                    f"split file {str(path)!r} has no `Filename` column "
                    f"(columns: {reader.fieldnames}); use the EuroSAT CSV layout or a .txt list"
                )
            names = [row["Filename"] for row in reader]
    else:
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return {Path(n).stem for n in names}


class EuroSATRGB(NonGeoClassificationDataset):
    """EuroSAT RGB JPEGs (ImageFolder layout) restricted to one split.

    Samples are ``{"image": (3, 64, 64) float32 in 0..255, "label": int64}``; labels follow the
    alphabetical class folders, which is EuroSAT's label order.
    """

    def __init__(
        self,
        root: Path,
        split_file: Path | None = None,
        transforms: Callable[[Sample], Sample] | None = None,
    ) -> None:
        """Open the dataset.

        Args:
            root: folder holding one sub-folder per class.
            split_file: split file (see :func:`read_split`); None keeps every image.
            transforms: optional per-sample transform.
        """
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(
                f"`root`={str(root)!r} is not a folder; point it at the EuroSAT RGB release "
                "(one folder per class holding <Class>_<n>.jpg)"
            )
        keep = read_split(split_file) if split_file is not None else None

        def is_valid(p: str | os.PathLike[str]) -> bool:
            p = str(p)
            return p.lower().endswith((".jpg", ".jpeg", ".png")) and (
                keep is None or Path(p).stem in keep
            )

        try:
            super().__init__(root=root, transforms=transforms, is_valid_file=is_valid)
        except FileNotFoundError as err:
            raise DatasetError(f"`root`={str(root)!r}: {err}") from err
        if keep is not None and len(self) != len(keep):
            raise DatasetError(
                f"split file {str(split_file)!r} lists {len(keep)} images but {len(self)} were "
                f"found under {str(root)!r}; check that root and split belong together"
            )
        unknown = set(self.classes) - set(EUROSAT_CLASSES)
        if unknown:
            raise DatasetError(f"`root`={str(root)!r} has class folders outside EuroSAT: {unknown}")


def make_dataset(spec: DataSpec, split: str) -> NonGeoClassificationDataset:
    """The dataset of one split (``train``, ``val`` or ``test``)."""
    if spec.source == "rgb":
        return EuroSATRGB(spec.root, spec.splits.get(split))
    if spec.source == "ms":
        try:
            return EuroSAT(root=spec.root, split=split, bands=spec.bands)  # type: ignore[arg-type]
        except Exception as err:  # torchgeo raises DatasetNotFoundError with its own hint
            raise DatasetError(f"EuroSAT MS at {str(spec.root)!r}: {err}") from err
    raise DatasetError(f"`source`={spec.source!r} is not 'rgb' or 'ms'")


def random_dihedral(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Apply one of the 8 flips/90 degree rotations to each image, exactly (no resampling).

    Args:
        images: (batch, bands, rows, cols) with rows == cols.
        generator: optional random generator.

    Returns:
        A new tensor of the same shape.
    """
    choice = torch.randint(0, 8, (images.shape[0],), generator=generator, device="cpu")
    out = images.clone()
    for k in range(8):
        idx = (choice == k).nonzero().flatten().to(images.device)
        if idx.numel() == 0:
            continue
        sel = images.index_select(0, idx)
        sel = torch.rot90(sel, k % 4, dims=(-2, -1))
        if k >= 4:
            sel = sel.flip(-1)
        out.index_copy_(0, idx, sel)
    return out


class EuroSATDataModule(NonGeoDataModule):
    """Lightning datamodule over :func:`make_dataset` splits with exact D4 augmentation.

    Training batches may also get :func:`geocam.training.augment.radiometric_jitter` (before the
    normalisation), so that the model reads L2A, hazy and differently lit scenes too.
    """

    def __init__(
        self,
        spec: DataSpec,
        batch_size: int = 128,
        num_workers: int = 0,
        jitter: RadiometricJitter | None = None,
    ) -> None:
        """Create the datamodule.

        Args:
            spec: which data and bands.
            batch_size: images per batch.
            num_workers: DataLoader worker processes.
            jitter: radiometric augmentation of training batches; None: off.
        """
        mean, std = spec.mean_std
        self.mean = torch.tensor(mean)
        self.std = torch.tensor(std)
        super().__init__(EuroSATRGB, batch_size, num_workers)
        self.spec = spec
        self.jitter = jitter

    def setup(self, stage: str) -> None:
        """Open the datasets a Lightning stage needs."""
        if stage == "fit":
            self.train_dataset = make_dataset(self.spec, "train")
            self.val_dataset = make_dataset(self.spec, "val")
            self.fit_batch_to(len(self.train_dataset))
        elif stage == "validate":
            self.val_dataset = make_dataset(self.spec, "val")
        elif stage in ("test", "predict"):
            self.test_dataset = make_dataset(self.spec, "test")

    def fit_batch_to(self, n_train: int) -> None:
        """Shrink the training batch to the training set (torchgeo drops the last partial batch)."""
        if 0 < n_train < self.batch_size:
            self.train_batch_size = n_train

    def on_after_batch_transfer(self, batch: Sample, dataloader_idx: int) -> Sample:
        """Normalise, and augment while training."""
        image = batch["image"].float()
        training = self.trainer is not None and self.trainer.training
        if training and self.jitter is not None:
            image = radiometric_jitter(image, self.spec.bands, self.spec.rendering, self.jitter)
        mean = self.mean.to(image.device).view(1, -1, 1, 1)
        std = self.std.to(image.device).view(1, -1, 1, 1)
        image = (image - mean) / std
        if training:
            image = random_dihedral(image)
        batch["image"] = image.contiguous(memory_format=torch.channels_last)
        return batch


__all__ = [
    "EUROSAT_MS_BANDS",
    "DataSpec",
    "EuroSATDataModule",
    "EuroSATRGB",
    "make_dataset",
    "ms_spec",
    "random_dihedral",
    "read_split",
    "rgb_spec",
]
