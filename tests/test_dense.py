"""The dense engine: window scores pooled from one feature map."""

import numpy as np
import pytest
import torch
from torch import nn

from geocam.cam import ExactEngine
from geocam.cam.dense import DenseEngine
from geocam.errors import ConfigError


class PatchLocalNet(nn.Module):
    """A GAP + linear classifier whose feature cells see only their own 32 x 32 px.

    With no receptive field beyond a cell, dense and exact scoring must agree exactly, which
    checks the dense engine's indexing, strips and pooling.
    """

    def __init__(self, bands: int = 3, classes: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(bands, 8, 32, stride=32), nn.ReLU())
        self.fc = nn.Linear(8, classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x).mean((2, 3)))


def _scores(engine, image, origins):
    out = list(engine.score(image, origins, 64))
    cams = np.concatenate([s.cams for s in out])
    return (
        cams.mean(axis=(2, 3)) + engine.bias,  # the logits of a GAP + linear head
        np.concatenate([s.probs for s in out]),
        np.concatenate([s.cams for s in out]),
    )


@pytest.mark.parametrize("max_pixels", [10**7, 96 * 32])  # whole image / 1-cell strips
def test_dense_equals_exact_for_a_patch_local_net(max_pixels):
    rng = np.random.default_rng(0)
    image = rng.standard_normal((3, 224, 288)).astype(np.float32)
    origins = [(r, c) for r in range(0, 224 - 63, 32) for c in range(0, 288 - 63, 32)]
    net = PatchLocalNet()
    dense = DenseEngine(net, precision="fp32", context_px=32, max_pixels=max_pixels)
    exact = ExactEngine(net, batch_size=7, precision="fp32")
    dl, dp, dc = _scores(dense, image, origins)
    el, _, ec = _scores(exact, image, origins)
    assert dc.shape == (len(origins), 4, 2, 2)
    np.testing.assert_allclose(dl, el, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dc, ec, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dp.sum(1), 1.0, rtol=1e-5)


def test_single_window_image_matches_exact_resnet(tiny_resnet):
    image = np.random.default_rng(1).standard_normal((3, 64, 64)).astype(np.float32)
    dl, _, dc = _scores(DenseEngine(tiny_resnet, precision="fp32"), image, [(0, 0)])
    el, _, ec = _scores(ExactEngine(tiny_resnet, precision="fp32"), image, [(0, 0)])
    np.testing.assert_allclose(dl, el, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dc, ec, rtol=1e-4, atol=1e-5)


def test_logits_are_the_mean_cam_plus_bias():
    net = PatchLocalNet()
    image = np.random.default_rng(2).standard_normal((3, 128, 128)).astype(np.float32)
    engine = DenseEngine(net, precision="fp32")
    logits, _, cams = _scores(engine, image, [(0, 0), (32, 64), (64, 32)])
    np.testing.assert_allclose(logits, cams.mean((2, 3)) + engine.bias, rtol=1e-5, atol=1e-6)


def test_off_lattice_windows_are_refused():
    engine = DenseEngine(PatchLocalNet(), precision="fp32")
    image = np.zeros((3, 128, 128), np.float32)
    with pytest.raises(ConfigError, match="lattice"):
        list(engine.score(image, [(0, 0), (16, 0)], 64))


@pytest.mark.parametrize("window_px, stride_px", [(48, 32), (64, 48)])
def test_grid_must_be_multiple_of_the_feature_stride(window_px, stride_px):
    with pytest.raises(ConfigError, match="multiple of 32"):
        DenseEngine.check_grid(window_px, stride_px)


def test_context_must_align():
    with pytest.raises(ConfigError, match="context_px"):
        DenseEngine(PatchLocalNet(), context_px=48)
