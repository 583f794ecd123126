"""`geocam train` and `geocam evaluate` end to end on tiny generated data (and real MS tiles)."""

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from helpers import SHARED_DATA as SHARED
from helpers import build_real_ms_root, write_ms_root, write_rgb_tree

from geocam.cli import main
from geocam.model import load_model


def _train(args: list[str]) -> str:
    result = CliRunner().invoke(main, ["train", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("architecture: resnet18\nbatch_size: 8\nnum_workers: 0\nthreads: 1\nseed: 0\n")
    return cfg


def test_train_resume_and_evaluate_rgb(tmp_path, tiny_config):
    names = write_rgb_tree(tmp_path / "rgb", per_class=2)
    splits = tmp_path / "splits"
    splits.mkdir()
    for name in ("train", "validation", "test"):
        (splits / f"{name}.txt").write_text("\n".join(names))
    out = tmp_path / "run"
    common = [
        "--config",
        str(tiny_config),
        "--root",
        str(tmp_path / "rgb"),
        "--split-dir",
        str(splits),
        "--out",
        str(out),
        "--precision",
        "fp32",
    ]
    _train([*common, "--epochs", "1"])
    assert (out / "checkpoints" / "last.ckpt").is_file()
    # the epoch's own checkpoint: written as each epoch ends, not only when training ends
    assert list((out / "checkpoints").glob("epoch=0-*.ckpt"))
    assert (out / "train.log").is_file()
    first = json.loads((out / "summary.json").read_text())
    assert first["epochs"] == 1

    _train([*common, "--epochs", "2", "--resume"])
    second = json.loads((out / "summary.json").read_text())
    assert second["epochs"] == 2  # continued from epoch 1, not restarted

    model = load_model(out / "model.safetensors")
    card = model.card
    assert card.architecture == "resnet18"
    assert card.bands == ("B04", "B03", "B02")
    assert card.rendering.scale == pytest.approx(255 / 2750)
    assert card.training["epochs"] == 2
    assert card.metrics["n"] == 20 and 0 <= card.metrics["overall_accuracy"] <= 1

    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            str(out / "model.safetensors"),
            "--root",
            str(tmp_path / "rgb"),
            "--split-file",
            str(splits / "test.txt"),
            "--out",
            str(tmp_path / "eval"),
            "--threads",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert report["n"] == 20
    assert sum(map(sum, report["confusion"])) == 20
    assert (tmp_path / "eval" / "confusion.png").stat().st_size > 1000


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, tiny_config):
    write_rgb_tree(tmp_path / "rgb", per_class=1)
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--config",
            str(tiny_config),
            "--root",
            str(tmp_path / "rgb"),
            "--out",
            str(tmp_path / "run"),
            "--resume",
        ],
    )
    assert result.exit_code == 2
    assert "last.ckpt" in result.output and "without --resume" in result.output


def test_evaluate_refuses_a_non_geocam_model(tmp_path):
    bogus = tmp_path / "m.safetensors"
    bogus.write_text("not a model")
    write_rgb_tree(tmp_path / "rgb", per_class=1)
    result = CliRunner().invoke(main, ["evaluate", str(bogus), "--root", str(tmp_path / "rgb")])
    assert result.exit_code == 2
    assert "not a safetensors file" in result.output


def test_train_ms_band_subset(tmp_path, tiny_config):
    write_ms_root(tmp_path / "ms", per_class=1)
    out = tmp_path / "run"
    _train(
        [
            "--config",
            str(tiny_config),
            "--data",
            "ms",
            "--root",
            str(tmp_path / "ms"),
            "--bands",
            "B04,B03,B02,B08",
            "--radiometric",
            "0.5",
            "--epochs",
            "1",
            "--out",
            str(out),
            "--precision",
            "fp32",
        ]
    )
    card = load_model(out / "model.safetensors").card
    assert card.bands == ("B04", "B03", "B02", "B08")
    assert card.training["radiometric_jitter"]["probability"] == 0.5
    assert card.rendering.scale == 1.0
    assert len(card.mean) == 4


@pytest.mark.skipif(not (SHARED / "eurosat-ms").is_dir(), reason="../shared/data/eurosat-ms absent")
def test_train_on_real_eurosat_ms_tiles(tmp_path, tiny_config):
    build_real_ms_root(tmp_path / "ms")
    out = tmp_path / "run"
    _train(
        [
            "--config",
            str(tiny_config),
            "--data",
            "ms",
            "--root",
            str(tmp_path / "ms"),
            "--epochs",
            "1",
            "--limit-images",
            "40",
            "--out",
            str(out),
        ]
    )
    card = load_model(out / "model.safetensors").card
    assert len(card.bands) == 13 and card.metrics["n"] == 40


def test_batch_larger_than_the_training_set_still_trains(tmp_path):
    write_rgb_tree(tmp_path / "rgb", per_class=1)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("architecture: resnet18\nbatch_size: 64\nnum_workers: 0\nthreads: 1\n")
    out = tmp_path / "run"
    _train(["--config", str(cfg), "--root", str(tmp_path / "rgb"), "--epochs", "1",
            "--out", str(out), "--precision", "fp32"])  # fmt: skip
    # torchgeo drops the last partial batch: without shrinking the batch no step would run
    assert json.loads((out / "summary.json").read_text())["epochs"] == 1


class _PatchLocal(torch.nn.Module):
    """Feature cells that see only their own 32 x 32 px: dense and exact CAMs are equal."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Conv2d(3, 8, 32, stride=32)
        self.fc = torch.nn.Linear(8, 10)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def get_classifier(self) -> torch.nn.Linear:
        return self.fc


def test_consistency_loss_is_zero_when_cells_are_local_and_training_lowers_it() -> None:
    from geocam.training.task import EuroSATClassification

    torch.manual_seed(0)
    images = torch.randn(18, 3, 64, 64)  # two 3 x 3 mosaics
    task = EuroSATClassification(model="resnet18", consistency_weight=1.0)
    task.configure_models()
    resnet = task.model
    task.model = _PatchLocal()
    assert task.consistency_loss(images).item() < 1e-10
    task.model = resnet.eval()  # batch norms on running statistics, as in training with it

    def loss() -> torch.Tensor:
        torch.manual_seed(1)  # the same mosaics every time
        return task.consistency_loss(images)

    before = loss().item()
    assert before > 0.01  # zero padding vs neighbours: a real ResNet's cells see context
    optimizer = torch.optim.Adam(task.model.parameters(), lr=1e-3)
    for _ in range(10):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    assert loss().item() < 0.9 * before
