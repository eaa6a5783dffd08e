"""How the score's settings (eps, patch, masks) change step 2's ranking of the poison, on
finished benchmark runs, without re-running the pipeline.

Usage: python benchmarks/analysis/score_settings.py WORK/<run> [...]

For each run folder (data/train with ground_truth.csv, run/train-poisoned/model.safetensors
from meca sanitize), scores the folder with the step-1 model under each setting below and
prints the AUROC of low KL as a poison detector; the poison in the seed clean set (the 5 %
with the highest score, which round 1 unlearns); the share of the poison among the 10 %
lowest scores (what the last round, which unlearns 90 %, would keep if it ranked by this
score); and the seconds the scoring took. The shipped setting must reproduce the run's own
step-2 scores (checked). Only step 2's ranking is measured here: the rounds re-score with
each round's model under the same setting.
"""

import sys
import time
from pathlib import Path

import torch

from meca_cli import steps
from meca_cli.config import ScoreConfig
from meca_cli.core.metrics import auroc
from meca_cli.core.partition import top_fraction
from meca_cli.core.scoring import kl_scores
from verdict_stats import rows  # this folder: run as a script

SHIPPED = ScoreConfig()
SETTINGS = {
    "shipped (eps 8, patch 2, masks 1)": SHIPPED,
    "masks 4": ScoreConfig(masks=4),
    "eps 4": ScoreConfig(eps=4 / 255),
    "eps 16": ScoreConfig(eps=16 / 255),
    "patch 3": ScoreConfig(patch=3),
    "patch 4": ScoreConfig(patch=4),
    "patch 4, masks 4": ScoreConfig(patch=4, masks=4),
}


def analyse(folder: Path) -> None:
    common = steps.Common(device="cpu")
    dataset = steps.open_data(folder / "data/train", common)
    model, _ = steps.load_checkpoint(folder / "run/train-poisoned/model.safetensors", dataset, torch.device("cpu"))
    poison = torch.tensor([r["role"] == "poison" for r in rows(folder / "data/train/ground_truth.csv")])
    recorded = torch.tensor([float(r["kl"]) for r in rows(folder / "run/score/scores.csv")])
    n = len(dataset)
    print(f"{folder.name}: {int(poison.sum())} poison of {n}")
    for name, cfg in SETTINGS.items():
        began = time.perf_counter()
        kl = kl_scores(model, dataset.images, dataset.labels, cfg, torch.device("cpu")).kl
        seconds = time.perf_counter() - began
        if cfg == SHIPPED and not torch.allclose(kl, recorded, rtol=1e-4, atol=1e-9):
            print(f"  WARNING: the shipped setting does not reproduce run/score/scores.csv "
                  f"(max difference {float((kl - recorded).abs().max()):.3g})")
        seed_set = top_fraction(kl, 0.05)
        lowest = torch.sort(kl, stable=True).indices[: n // 10]
        kept = float(poison[lowest].sum()) / max(1, int(poison.sum()))
        print(f"  {name:34s} AUROC {auroc(-kl, poison):.3f}  poison in seed set {int(poison[seed_set].sum()):4d}"
              f"  poison in lowest 10 % {100 * kept:5.1f} %  {seconds:5.1f} s")


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        analyse(Path(arg))
