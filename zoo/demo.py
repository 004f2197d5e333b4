"""``make demo``: the VAE on scikit-learn's digits with both guide families, side by side.

Trains ``zoo train vae --guide diagonal_normal`` and ``--guide householder`` on the embedded
digits (80/20 split, seed 0; dynamic binarization), each writing a run folder with figures, then
prints held-out ELBO and seconds per epoch for each. Under three minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from zoo import cli

GUIDES = ("diagonal_normal", "householder")


def main(argv=None):
    """``make demo``: train the VAE on digits with each demo guide, print held-out ELBO and seconds
    per epoch side by side, write the figures to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/demo")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    out = Path(args.out)
    for guide in GUIDES:
        cli.main(["train", "vae", "--guide", guide, "--elbo", "meanfield", "--data", "digits",
                  "--epochs", str(args.epochs), "--batch-size", "64", "--lr", "3e-3",
                  "--model-opt", "latent_dim=8", "--model-opt", "hidden_dims=[200]",
                  "--guide-opt", "hidden_dims=[200]", "--seed", str(args.seed),
                  "--out", str(out / guide), "--quiet", "--overwrite"])  # a rerun replaces

    rows = [(g, json.loads((out / g / "summary.json").read_text())) for g in GUIDES]
    print(f"\nVAE on digits ({args.epochs} epochs, seed {args.seed}); figures in {out}/<guide>/\n")
    print("| guide | held-out ELBO (nats/image) | seconds/epoch |")
    print("|---|---|---|")
    for guide, summary in rows:
        print(f"| {guide} | {summary['heldout_elbo']:.2f} | {summary['seconds_per_epoch']:.2f} |")


if __name__ == "__main__":
    main()
