"""Settings of ``geocam train`` and ``geocam evaluate``: frozen dataclasses, validated, from YAML.

Each field is declared once with :func:`geocam.options.setting` (default, help, flag, bounds);
the command-line options, the YAML loader (``pipelines/finetune_*.yaml``) and the README tables
come from there. This module imports neither torch nor Lightning, so that the command line can
build its options without them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from .. import options
from ..config import Precision
from ..errors import ConfigError
from ..options import check_fields, setting

if TYPE_CHECKING:
    from .data import DataSpec

Source = Literal["rgb", "ms"]
Accelerator = Literal["auto", "cpu", "gpu"]


def split_bands(text: str) -> tuple[str, ...]:
    """``"B04,b03, B02"`` -> ``("B04", "B03", "B02")``."""
    bands = tuple(b.strip().upper() for b in text.split(",") if b.strip())
    if not bands:
        raise ConfigError(f"`bands`={text!r} is empty; pass e.g. B04,B03,B02")
    return bands


def _source_help() -> str:
    return "Training data: EuroSAT RGB JPEGs (rgb) or torchgeo's 13-band EuroSAT (ms)."


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Settings of one training run (``pipelines/finetune_eurosat.yaml`` is the bundled model's).

    ``warmup_epochs`` is counted in epochs but applied per batch (linear warm-up, then cosine
    decay to zero). ``context_weight`` and ``consistency_weight`` switch on the two losses of
    :mod:`geocam.training.losses`; with the consistency loss on, batch norms keep their running
    statistics.
    """

    root: Path = setting(help="Dataset root.")
    out_dir: Path = setting(help="Run folder (checkpoints, logs, train.log).", flag="--out")
    source: Source = setting("rgb", help=_source_help(), flag="--data")
    split_dir: Path | None = setting(
        None,
        help="RGB: folder with train/validation/test .csv or .txt split files.",
        shown="every image in every split",
    )
    bands: tuple[str, ...] | None = setting(
        None, help="MS: comma-separated band subset, e.g. B04,B03,B02.", parse=split_bands,
        shown="all 13",
    )  # fmt: skip
    model_path: Path | None = setting(
        None, help="Output .safetensors.", flag="--model", shown="OUT/model.safetensors"
    )
    architecture: str = setting("resnet50", help="timm model name.")
    init: str = setting(
        "none", help="Initial weights: none, imagenet, a torchgeo weight name or a weights file."
    )
    download: bool = setting(False, help="Allow downloading --init weights.")
    epochs: int = setting(60, help="Training epochs.", low=1)
    batch_size: int = options.batch_size_setting(256)
    lr: float = setting(2e-3, help="Peak AdamW learning rate.", low=0, low_open=True)
    weight_decay: float = setting(0.05, help="AdamW weight decay.", low=0)
    warmup_epochs: int = setting(3, help="Epochs of linear warm-up before the cosine decay.", low=0)
    label_smoothing: float = setting(0.1, help="Cross-entropy label smoothing.", low=0, high=1)
    context_weight: float = setting(
        0.0,
        help="Weight of the mosaic loss that makes dense scene runs agree with exact ones (0: off).",
        low=0,
    )
    mosaic_grid: int = setting(3, help="Patches per mosaic side for the mosaic losses.", low=1)
    consistency_weight: float = setting(
        0.0,
        help="Weight of the loss matching mosaic (dense) CAMs to each window's own (exact) CAM.",
        low=0,
    )
    radiometric: float = setting(
        0.0,
        help="Share of training images given radiometric jitter (L2A-like, haze, gain, gamma).",
        low=0,
        high=1,
        hint="a probability; 0: off",
    )
    seed: int = setting(0, help="Random seed.")
    num_workers: int = setting(2, help="DataLoader worker processes.", flag="--workers", low=0)
    threads: int | None = options.threads_setting()
    precision: Precision = options.precision_setting()
    accelerator: Accelerator = setting("auto", help="Lightning accelerator.")
    limit_images: int | None = setting(
        None, help="Keep a seeded random N images of each split.", low=1, shown="all"
    )
    max_minutes: float | None = setting(
        None, help="Stop training after this long, then export.", low=0, low_open=True,
        shown="no limit",
    )  # fmt: skip
    resume: bool = setting(False, help="Continue from OUT/checkpoints/last.ckpt.", negatable=False)
    #: The command line that started the run, for the model card (set by the CLI).
    command: str = ""

    def __post_init__(self) -> None:
        check_fields(self)

    @property
    def model_file(self) -> Path:
        """Where the trained model goes."""
        return self.model_path or self.out_dir / "model.safetensors"

    def data_spec(self) -> DataSpec:
        """The training data (imports torchgeo)."""
        from .data import ms_spec, rgb_spec

        if self.source == "rgb":
            return rgb_spec(self.root, self.split_dir)
        return ms_spec(self.root, self.bands)


@dataclass(frozen=True, slots=True)
class EvaluateConfig:
    """Settings of ``geocam evaluate``."""

    root: Path = setting(help="Dataset root.")
    source: Source = setting("rgb", help=_source_help(), flag="--data")
    split_file: Path | None = setting(
        None, help="RGB: CSV/TXT split to evaluate.", shown="every image under --root",
        exists=True,
    )  # fmt: skip
    split: str = setting("test", help="MS: torchgeo split name.")
    out_dir: Path = setting(
        Path("out/evaluate"), help="Folder for evaluation.json and confusion.png.", flag="--out"
    )
    batch_size: int = options.batch_size_setting(256)
    threads: int | None = options.threads_setting()
    device: str = options.device_setting("cpu")

    def __post_init__(self) -> None:
        check_fields(self)
