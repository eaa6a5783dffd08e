"""Where the split's suspects sit, per class, for finished benchmark runs.

Usage: python benchmarks/analysis/collapse.py benchmarks/work/cifar10-small/badnet-s0 [...]

For each run folder (data/train with ground_truth.csv, run/ from meca sanitize): the class
histogram of the 1,000 most robust samples at step 2, the per-class count of samples whose
enhanced-model confidence in their label is >= 0.5, and, within the most-suspected class,
the AUROC of the step-2 KL score, the step-1 loss and the enhanced confidence for telling
poison from clean.
"""

import csv
import sys
from pathlib import Path

import torch

from meca_cli.core.metrics import auroc


def analyse(folder: Path) -> None:
    scores = list(csv.DictReader(open(folder / "run/score/scores.csv", encoding="utf-8")))
    split = list(csv.DictReader(open(folder / "run/split/split.csv", encoding="utf-8")))
    truth = {int(r["index"]): r["role"] for r in csv.DictReader(open(folder / "data/train/ground_truth.csv"))}
    labels = torch.tensor([int(r["label"]) for r in scores])
    poison = torch.tensor([truth[int(r["index"])] == "poison" for r in scores])
    kl = torch.tensor([float(r["kl"]) for r in scores])
    loss = torch.tensor([float(r["loss"]) for r in scores])
    conf = torch.tensor([float(r["enhanced_conf"]) for r in split])
    classes = int(labels.max()) + 1
    confident = torch.bincount(labels[conf >= 0.5], minlength=classes)
    print(folder.name)
    print("  classes of the 1,000 lowest KL scores:", torch.bincount(labels[kl.argsort()[:1000]], minlength=classes).tolist())
    print("  confident (>= 0.5) per class:         ", confident.tolist(),
          f"(poison among them: {int((poison & (conf >= 0.5)).sum())} of {int(poison.sum())})")
    top = int(confident.argmax())
    inside = labels == top
    if poison[inside].any() and (~poison[inside]).any():
        print(f"  within class {top}: AUROC of -KL {auroc(-kl[inside], poison[inside]):.3f}, "
              f"-loss {auroc(-loss[inside], poison[inside]):.3f}, enhanced confidence "
              f"{auroc(conf[inside], poison[inside]):.3f}")


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        analyse(Path(arg))
