"""The usual approach, as a baseline: TorchGeo RasterDataset + GriddedPatchSampler + DataLoader +
pytorch-grad-cam ``GradCAM`` on ResNet50 ``layer4``, averaged into a scene array, written with
rasterio.

This is what a user would write today without geocam. It uses the same bundled model, bands and
EuroSAT rendering as geocam (so it computes the same thing), fp32 (Grad-CAM needs gradients), and
Grad-CAM's per-window normalisation. Prints one JSON line: windows, wall seconds, seconds inside
the model (Grad-CAM call), peak RSS.

    .venv/bin/python benchmarks/peer_gradcam.py SCENE.tif --model MODEL --out peer.tif
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from pytorch_grad_cam import GradCAM
from safetensors.torch import load_file
from torch.utils.data import DataLoader
from torchgeo.datasets import RasterDataset, stack_samples
from torchgeo.samplers import GriddedPatchSampler

from geocam.model import EUROSAT_MS_BANDS, build_net, read_card
from geocam.pipeline import peak_rss_mib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scene", type=Path, help="13-band GeoTIFF in EuroSAT band order")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--window-px", type=int, default=64)
    parser.add_argument("--stride-px", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    # The usual network: timm's ResNet50 (BatchNorms and all) with the model file's weights.
    card = read_card(args.model)
    net = build_net(card.architecture, len(card.bands), len(card.classes))
    net.load_state_dict({k: v.float() for k, v in load_file(args.model).items()})
    net.eval()

    class Scene(RasterDataset):
        filename_glob = args.scene.name
        all_bands = EUROSAT_MS_BANDS
        is_image = True

    dataset = Scene(paths=str(args.scene.parent), bands=card.bands)
    sampler = GriddedPatchSampler(dataset, size=args.window_px, stride=args.stride_px)
    loader = DataLoader(
        dataset,
        sampler=sampler,
        batch_size=args.batch_size,
        collate_fn=stack_samples,
        num_workers=args.workers,
    )
    r = card.rendering
    mean = torch.tensor(card.mean).view(1, -1, 1, 1)
    std = torch.tensor(card.std).view(1, -1, 1, 1)

    with rasterio.open(args.scene) as src:
        profile, transform, shape = src.profile, src.transform, (src.height, src.width)
    acc = np.zeros(shape, np.float32)
    hits = np.zeros(shape, np.uint16)
    inverse = ~transform
    model_s = 0.0
    windows = 0
    cam = GradCAM(model=net, target_layers=[net.layer4])  # type: ignore[arg-type]
    for batch in loader:
        x = batch["image"].float()
        x = ((torch.clamp(x * r.scale + r.offset, r.clip_min, r.clip_max) - mean) / std).float()
        t0 = time.perf_counter()
        heat = cam(input_tensor=x, targets=None)  # top class of each window, per-window 0..1
        model_s += time.perf_counter() - t0
        for k in range(heat.shape[0]):
            b = batch["bounds"][k]
            col, row = inverse * (float(b[0]), float(b[4]))  # (xmin, ymax) -> pixel
            r0, c0 = round(row), round(col)
            r1, c1 = min(r0 + args.window_px, shape[0]), min(c0 + args.window_px, shape[1])
            rr0, cc0 = max(r0, 0), max(c0, 0)
            acc[rr0:r1, cc0:c1] += heat[k, rr0 - r0 : r1 - r0, cc0 - c0 : c1 - c0]
            hits[rr0:r1, cc0:c1] += 1
        windows += heat.shape[0]
    out = np.divide(acc, hits, out=np.full_like(acc, np.nan), where=hits > 0)
    profile.update(count=1, dtype="float32", nodata=np.nan, compress="deflate", tiled=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(args.out, "w", **profile) as dst:
        dst.write(out, 1)
    wall = time.perf_counter() - start
    peak_mib = peak_rss_mib()
    print(
        json.dumps(
            {
                "approach": "peer",
                "windows": windows,
                "wall_s": wall,
                "model_s": model_s,
                "peak_rss_mib": peak_mib,
            }
        )
    )


if __name__ == "__main__":
    main()
