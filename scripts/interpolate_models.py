"""Weight-space interpolation of two geocam models of one architecture (WiSE-FT).

``weights = (1 - alpha) * A + alpha * B`` for every floating-point tensor (BatchNorm statistics
included), integer counters from B; the card is B's, with the recipe added under ``training``.
Fine-tuning B from A keeps the two in one basin, so the mix keeps A's accuracy on A's data and
much of B's robustness (Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022).

    python scripts/interpolate_models.py A.safetensors B.safetensors --alpha 0.5 --out MIX.safetensors
"""

import argparse
import hashlib
from dataclasses import replace
from pathlib import Path

from safetensors.torch import load_file

from geocam.model import build_net, read_card, save_model


def main() -> None:
    """Interpolate the two models and write the mix."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--alpha", type=float, required=True, help="weight of B (0: A, 1: B)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    card_a, card_b = read_card(args.a), read_card(args.b)
    if (card_a.architecture, card_a.classes, card_a.bands) != (
        card_b.architecture,
        card_b.classes,
        card_b.bands,
    ):
        raise SystemExit("the two models differ in architecture, classes or bands")
    wa, wb = load_file(str(args.a)), load_file(str(args.b))
    mixed = {
        k: ((1 - args.alpha) * wa[k].float() + args.alpha * v.float())
        if v.is_floating_point()
        else v
        for k, v in wb.items()
    }
    net = build_net(card_b.architecture, len(card_b.bands), len(card_b.classes))
    net.load_state_dict(mixed)
    digest = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (args.a, args.b)}
    training = {
        **card_b.training,
        "interpolation": {
            "a": {"file": args.a.name, "sha256": digest[args.a.name]},
            "b": {"file": args.b.name, "sha256": digest[args.b.name]},
            "alpha": args.alpha,
            "rule": "(1 - alpha) * a + alpha * b, every floating-point tensor",
        },
    }
    save_model(args.out, net.eval(), replace(card_b, training=training, metrics={}))
    print(f"wrote {args.out} (alpha {args.alpha})")  # noqa: T201


if __name__ == "__main__":
    main()
