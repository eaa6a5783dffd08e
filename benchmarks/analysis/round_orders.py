"""How much of the poison each re-scoring round would unlearn, ordered by the KL score (the
shipped order) or by the model's confidence in the given label, on finished benchmark runs.

Usage: python benchmarks/analysis/round_orders.py WORK/<run> [...]

Every re-scoring round's scores file (enhance/rounds/round{t}_scores.csv) holds, from the
model before that round's epoch, both the KL score and the probability of the given label.
Per round: the poison in the clean set the round unlearned (its `round{t}_clean.idx`: the
highest KL, or the least-held labels where the run ordered its last round by confidence),
and the poison in the same number of images taken by the other order. Nothing is trained,
so only each round's own choice is compared: with another order, later rounds would start
from another model.
"""

import sys
from pathlib import Path

import torch

from verdict_stats import rows  # this folder: run as a script


def analyse(folder: Path) -> None:
    poison = torch.tensor([r["role"] == "poison" for r in rows(folder / "data/train/ground_truth.csv")])
    cells = []
    for scores in sorted((folder / "run/enhance/rounds").glob("round*_scores.csv"),
                         key=lambda p: int(p.name[5:].split("_")[0])):
        t = scores.name[5:].split("_")[0]
        got = rows(scores)
        count = len((folder / f"run/enhance/rounds/round{t}_clean.idx").read_text().split())
        kl = torch.tensor([float(r["kl"]) for r in got])
        conf = torch.tensor([float(r["conf"]) for r in got])
        by_kl = int(poison[torch.sort(-kl, stable=True).indices[:count]].sum())
        by_conf = int(poison[torch.sort(conf, stable=True).indices[:count]].sum())
        cells.append(f"round {t}: {by_kl:3d} / {by_conf:3d}")
    print(f"{folder.name:18s} poison unlearned, by KL / by confidence ({int(poison.sum())} poison): " + ", ".join(cells))


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        analyse(Path(arg))
