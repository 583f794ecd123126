"""geocam's light inference ResNet matches timm's, key for key and output for output."""

import pytest
import timm
import torch

from geocam.model.resnet import LAYOUTS, build_resnet


@pytest.mark.parametrize("arch, bands", [("resnet18", 3), ("resnet50", 13)])
def test_same_keys_and_outputs_as_timm(arch, bands):
    torch.manual_seed(0)
    ref = timm.create_model(arch, pretrained=False, num_classes=10, in_chans=bands).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    light = build_resnet(arch, bands, 10)
    assert light is not None
    assert list(light.state_dict()) == list(ref.state_dict())
    light.load_state_dict(ref.state_dict())
    light.eval()
    x = torch.randn(2, bands, 96, 64)
    with torch.no_grad():
        torch.testing.assert_close(light.forward_features(x), ref.forward_features(x))
        torch.testing.assert_close(light(x), ref(x))


def test_unknown_architecture_falls_back():
    assert build_resnet("convnext_tiny", 3, 10) is None
    assert set(LAYOUTS) >= {"resnet18", "resnet50"}


def test_scene_modules_do_not_import_timm():
    import subprocess
    import sys

    code = "import sys, geocam.pipeline, geocam.cli; print('timm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_folded_batch_norms_give_the_same_outputs(arch):
    import copy

    from geocam.model.resnet import fold_batch_norms

    torch.manual_seed(0)
    net = build_resnet(arch, 3, 10)
    assert net is not None
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    net.eval()
    folded = fold_batch_norms(copy.deepcopy(net).to(memory_format=torch.channels_last))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert folded.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), atol=1e-4, rtol=1e-4)
