"""Training throughput of the geocam ResNet50 on 64 px EuroSAT-sized batches: bf16 vs fp32.

Times full optimisation steps (forward, cross-entropy, backward, AdamW) of timm ``resnet50`` in
channels_last, with and without bf16 autocast, in one run, and prints the median images/s of
each and their ratio. Synthetic inputs: the step's cost does not depend on pixel values.

    .venv/bin/python benchmarks/train_throughput.py --threads 2 --batch-size 64 --steps 6
"""

import argparse
import platform
import statistics
import time

import torch

from geocam.cam import cpu_supports_bf16
from geocam.model import build_net


def time_steps(bf16: bool, batch: int, steps: int, device: str) -> list[float]:
    """Seconds per optimisation step, after two warm-up steps."""
    torch.manual_seed(0)
    net = build_net("resnet50", 3, 10).to(device).to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, 64, 64, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    times = []
    for i in range(steps + 2):
        start = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"machine: {platform.processor() or platform.machine()}, {args.threads} threads, "
        f"torch {torch.__version__}, device {args.device}, CPU bf16 units: {cpu_supports_bf16()}"
    )
    print(f"batch {args.batch_size} x 3 x 64 x 64, {args.steps} timed steps after 2 warm-up")
    result = {}
    for name, bf16 in (("fp32", False), ("bf16", True)):
        times = time_steps(bf16, args.batch_size, args.steps, args.device)
        med = statistics.median(times)
        result[name] = args.batch_size / med
        print(
            f"{name}: median {med:.3f} s/step  {result[name]:.1f} images/s  "
            f"(min {min(times):.3f}, max {max(times):.3f})"
        )
    epoch_min = 18900 / result["bf16"] / 60
    print(
        f"bf16 / fp32 throughput ratio: {result['bf16'] / result['fp32']:.2f}x; "
        f"one 18,900-image epoch at bf16 speed: {epoch_min:.1f} min"
    )


if __name__ == "__main__":
    main()
