from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from geocam.cam import (
    Engine,
    ExactEngine,
    cam_head,
    check_grid,
    cpu_supports_bf16,
    make_engine,
    prepare_net,
)
from geocam.errors import ConfigError, ModelFormatError


def test_tiny_resnet_is_tiny(tiny_resnet: nn.Module) -> None:
    assert 1_000 < sum(p.numel() for p in tiny_resnet.parameters()) < 50_000


def test_exact_engine_matches_forward(tiny_resnet: nn.Module) -> None:
    engine = ExactEngine(tiny_resnet, batch_size=3, precision="fp32")
    assert isinstance(engine, Engine)
    rng = np.random.default_rng(0)
    image = rng.normal(size=(3, 100, 140)).astype(np.float32)
    origins = [(0, 0), (10, 20), (36, 76), (5, 5), (20, 40)]
    batches = list(engine.score(image, origins, 64))
    assert [len(b.probs) for b in batches] == [3, 2]
    probs = np.concatenate([b.probs for b in batches])
    cams = np.concatenate([b.cams for b in batches])
    # GAP + linear: the logit is the CAM's spatial mean plus the bias
    logits = cams.mean(axis=(2, 3)) + engine.bias
    assert cams.shape == (5, 10, 2, 2) and cams.dtype == np.float32
    x = torch.stack([torch.from_numpy(image[:, r : r + 64, c : c + 64]) for r, c in origins])
    with torch.no_grad():
        ref = tiny_resnet(x).numpy()
    np.testing.assert_allclose(logits, ref, atol=1e-4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert not tiny_resnet._forward_hooks and not any(
        m._forward_hooks for m in tiny_resnet.modules()
    )
    assert not tiny_resnet.training


def test_input_scale_resizes(tiny_resnet: nn.Module) -> None:
    engine = ExactEngine(tiny_resnet, precision="fp32", input_scale=2.0)
    out = next(engine.score(np.zeros((3, 64, 64), np.float32), [(0, 0)], 64))
    assert out.cams.shape == (1, 10, 4, 4)


@pytest.mark.skipif(not cpu_supports_bf16(), reason="no native bf16 (AVX512-BF16, AMX) here")
def test_bf16_close_to_fp32(tiny_resnet: nn.Module) -> None:
    bf16 = ExactEngine(tiny_resnet, precision="bf16")
    fp32 = ExactEngine(tiny_resnet, precision="fp32")
    image = np.random.default_rng(1).normal(size=(3, 64, 64)).astype(np.float32)
    a = next(bf16.score(image, [(0, 0)], 64))
    b = next(fp32.score(image, [(0, 0)], 64))
    np.testing.assert_allclose(a.probs, b.probs, atol=0.05)


def test_cam_head_rejects_non_gap_linear_models() -> None:
    with pytest.raises(ModelFormatError, match="average pool \\+ linear head"):
        cam_head(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()))


def test_make_engine_rejects_unknown_mode_and_device(tiny_resnet: nn.Module) -> None:
    with pytest.raises(ConfigError, match="`mode`='sparse' is not one of exact, dense"):
        make_engine("sparse", tiny_resnet, 8, "cpu", "fp32", 1.0)
    with pytest.raises(ConfigError, match="input_scale"):
        make_engine("dense", tiny_resnet, 8, "cpu", "fp32", 2.0)
    assert make_engine("dense", tiny_resnet, 8, "cpu", "fp32", 1.0).name == "dense"
    with pytest.raises(ConfigError, match="`device`="):
        make_engine("exact", tiny_resnet, 8, "nonsense", "fp32", 1.0)


def test_prepare_net_converts_a_copy_and_reuses_a_ready_net(tiny_resnet: nn.Module) -> None:
    cpu = torch.device("cpu")
    bf16 = prepare_net(tiny_resnet, cpu, torch.bfloat16)
    assert bf16 is not tiny_resnet and next(bf16.parameters()).dtype == torch.bfloat16
    assert next(tiny_resnet.parameters()).dtype == torch.float32  # the caller's is unchanged
    assert prepare_net(bf16, cpu, torch.bfloat16) is bf16
    conv = next(m for m in bf16.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_check_grid_decides_what_each_mode_runs() -> None:
    check_grid("exact", "inward", 60, 20, 2.0)  # exact mode runs any grid
    check_grid("dense", "torchgeo", 64, 32, 1.0)
    with pytest.raises(ConfigError, match="`stride_px`=16 is not a multiple of 32"):
        check_grid("dense", "torchgeo", 64, 16, 1.0)
    with pytest.raises(ConfigError, match="`grid`='inward'"):
        check_grid("dense", "inward", 64, 32, 1.0)
    with pytest.raises(ConfigError, match="input_scale"):
        check_grid("dense", "torchgeo", 64, 32, 2.0)
    with pytest.raises(ConfigError, match="`mode`='sparse'"):
        check_grid("sparse", "torchgeo", 64, 32, 1.0)


def test_engines_carry_the_whole_protocol(tiny_resnet: nn.Module) -> None:
    for mode, context_px in (("exact", 0), ("dense", 64)):
        engine = make_engine(mode, tiny_resnet, 8, "cpu", "fp32", 1.0)
        assert isinstance(engine, Engine)
        assert (engine.name, engine.device, engine.precision) == (mode, torch.device("cpu"), "fp32")
        assert engine.context_px == context_px and engine.bias.shape == (10,)
