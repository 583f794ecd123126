"""The geocam model file format and initial-weight resolution (offline)."""

import json
import urllib.error
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from geocam.errors import ModelFormatError, WeightsNotFoundError
from geocam.model import (
    EUROSAT_CLASSES,
    EUROSAT_RGB_RENDERING,
    IMAGENET_URL,
    RGB_BANDS,
    ModelCard,
    build_net,
    hub_checkpoint_path,
    load_init_weights,
    load_model,
    normalisation_for,
    read_card,
    resolve_init_weights,
    save_model,
)


@pytest.fixture(autouse=True)
def _restore_hub_dir():
    before = torch.hub.get_dir()
    yield
    torch.hub.set_dir(before)


def _card(arch="resnet18", bands=RGB_BANDS) -> ModelCard:
    mean, std = normalisation_for(RGB_BANDS, rgb8=True)
    return ModelCard(arch, EUROSAT_CLASSES, bands, EUROSAT_RGB_RENDERING, mean, std)


@pytest.fixture
def model_file(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    net = build_net("resnet18", 3, 10).eval()
    path = tmp_path / "m.safetensors"
    save_model(path, net, _card())
    return path, net


def test_round_trip_keeps_card_and_outputs(model_file):
    path, net = model_file
    loaded = load_model(path)
    assert loaded.card == _card()
    assert len(loaded.sha256) == 64
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref, got = net(x), loaded.net(x)
    # float16 storage: logits agree to fp16 precision
    assert torch.allclose(ref, got, atol=5e-2, rtol=1e-2)
    assert (ref.argmax(1) == got.argmax(1)).all()
    assert not loaded.net.training


def test_save_is_atomic_and_leaves_no_temp(model_file):
    path, _ = model_file
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_not_a_safetensors_file_is_refused(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"PK\x03\x04 this is a zip, not safetensors")
    with pytest.raises(ModelFormatError, match="not a safetensors file"):
        load_model(bad)


def test_safetensors_without_geocam_metadata_is_refused(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ModelFormatError, match="not a geocam model"):
        read_card(path)


def test_missing_field_is_named(tmp_path):
    path = tmp_path / "partial.safetensors"
    meta = json.loads(_card().to_json())
    del meta["rendering"]
    save_file(
        {"w": torch.zeros(2)},
        str(path),
        metadata={"format": "geocam.model/1", "geocam": json.dumps(meta)},
    )
    with pytest.raises(ModelFormatError, match="lacks rendering"):
        load_model(path)


def test_weights_that_do_not_fit_the_card_are_refused(tmp_path):
    path = tmp_path / "wrong.safetensors"
    save_model(path, build_net("resnet18", 3, 10), _card(arch="resnet34"))
    with pytest.raises(ModelFormatError, match="do not fit"):
        load_model(path)


def test_card_validates_band_statistics():
    with pytest.raises(ModelFormatError, match="one value per band"):
        ModelCard("resnet18", EUROSAT_CLASSES, ("B04",), EUROSAT_RGB_RENDERING, (1.0, 2.0), (1.0,))


def test_imagenet_weights_come_from_the_hub_cache_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.hub.set_dir(str(tmp_path / "hub"))
    cached = hub_checkpoint_path(IMAGENET_URL)
    cached.parent.mkdir(parents=True)
    torch.manual_seed(1)
    reference = build_net("resnet18", 3, 1000).state_dict()
    torch.save(reference, cached)

    state = resolve_init_weights("imagenet", download=False)
    assert state is not None
    net = build_net("resnet18", 13, 10)
    left = load_init_weights(net, state)
    assert left == ["fc.bias", "fc.weight"]
    # conv1 adapted from 3 to 13 bands: the mean RGB filter, scaled by 3/13
    expected = reference["conv1.weight"].mean(1, keepdim=True).repeat(1, 13, 1, 1) * 3 / 13
    assert torch.allclose(net.state_dict()["conv1.weight"], expected)
    assert torch.equal(
        net.state_dict()["layer1.0.conv1.weight"], reference["layer1.0.conv1.weight"]
    )


def test_uncached_weights_without_download_name_the_file_to_fetch(tmp_path):
    torch.hub.set_dir(str(tmp_path / "hub"))
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_init_weights("imagenet", download=False)
    assert IMAGENET_URL in str(err.value)
    assert str(hub_checkpoint_path(IMAGENET_URL)) in str(err.value)


def test_failed_download_names_the_file_to_fetch(tmp_path, monkeypatch):
    torch.hub.set_dir(str(tmp_path / "hub"))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(torch.hub, "urlopen", no_network)
    with pytest.raises(WeightsNotFoundError, match="cannot download.*place it at"):
        resolve_init_weights("imagenet", download=True)


def test_torchgeo_weight_name_resolves_to_its_cached_file(tmp_path):
    from torchgeo.models import get_weight

    torch.hub.set_dir(str(tmp_path / "hub"))
    name = "ResNet50_Weights.SENTINEL2_RGB_MOCO"
    cached = hub_checkpoint_path(get_weight(name).url)
    cached.parent.mkdir(parents=True)
    torch.save({"conv1.weight": torch.ones(64, 3, 7, 7)}, cached)
    state = resolve_init_weights(name, download=False)
    assert state is not None and torch.equal(state["conv1.weight"], torch.ones(64, 3, 7, 7))


def test_unknown_weight_name_is_refused():
    with pytest.raises(WeightsNotFoundError, match="neither"):
        resolve_init_weights("ResNet50_Weights.NO_SUCH_THING", download=False)


def test_local_safetensors_init(tmp_path):
    path = tmp_path / "init.safetensors"
    save_file({"conv1.weight": torch.full((64, 3, 7, 7), 0.5)}, str(path))
    state = resolve_init_weights(str(path), download=False)
    net = build_net("resnet18", 3, 10)
    load_init_weights(net, state)
    assert torch.all(net.conv1.weight == 0.5)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_loaded_model_does_not_keep_the_file_mapped(model_file):
    # One tensor viewing safe_open's memory map keeps the whole file resident (47 MB for the
    # bundled model): every weight must be a copy.
    path, _ = model_file
    loaded = load_model(path, dtype=torch.bfloat16)
    assert str(path) not in Path("/proc/self/maps").read_text()
    assert {p.dtype for p in loaded.net.parameters()} == {torch.bfloat16}


def test_loaded_resnet_has_its_batch_norms_folded(model_file):
    path, _ = model_file
    loaded = load_model(path)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in loaded.net.modules())
    assert loaded.net.conv1.bias is not None
