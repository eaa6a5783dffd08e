"""The KL score's AUROC for each kind of poison of a finished benchmark run.

Usage: python benchmarks/analysis/score_by_trigger.py benchmarks/work/cifar10-small/adaptive_patch-s1 [...]

Poisons are grouped by their ground-truth detail (AdaptivePatch: which of its four training
triggers, trigger=0..3); each group is ranked against the clean images by step 2's score
(low KL = suspicious), as `meca bench` ranks all the poison at once.
"""

import sys
from collections import defaultdict
from pathlib import Path

import torch

from meca_cli.core.metrics import auroc
from verdict_stats import rows  # this folder: run as a script


def analyse(folder: Path) -> None:
    truth = rows(folder / "data/train/ground_truth.csv")
    kl = torch.tensor([float(r["kl"]) for r in rows(folder / "run/score/scores.csv")])
    clean = torch.tensor([t["role"] == "clean" for t in truth])
    groups = defaultdict(list)
    for i, t in enumerate(truth):
        if t["role"] == "poison":
            groups[t["detail"] or "all"].append(i)
    for detail, members in sorted(groups.items()):
        poison = torch.zeros(len(truth), dtype=torch.bool)
        poison[members] = True
        ranked = poison | clean
        print(f"{folder.name} {detail}: {len(members)} poisons, AUROC {auroc(-kl[ranked], poison[ranked]):.3f}")


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        analyse(Path(arg))
