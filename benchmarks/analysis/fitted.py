"""Does a model fit the poison at all? The KL score's AUROC and the given-label
confidence's AUROC for the poison, from a `meca score` of any model over the run's folder.

Usage: meca score WORK/<run>/data/train -m WORK/<run>/no-defence/model.safetensors -o OUT --seed S
       python benchmarks/analysis/fitted.py WORK/<run> OUT/scores.csv

MeCa's premise is that the backdoor makes its poison robust (low KL) and confidently held.
A confidence AUROC below 0.5 means the model holds the poison's (target) labels less than
the clean images' own: there is no robust backdoor in the training poison for the score to
find, whatever the enhancement schedule. Scoring the no-defence model (full training) tells
it apart from a step-1 model that had merely not trained long enough.
"""

import sys
from pathlib import Path

import torch

from meca_cli.core.metrics import auroc
from verdict_stats import rows  # this folder: run as a script


def analyse(folder: Path, scores: Path) -> None:
    roles = [t["role"] for t in rows(folder / "data/train/ground_truth.csv")]
    got = rows(scores)
    kl = torch.tensor([float(r["kl"]) for r in got])
    conf = torch.tensor([float(r["conf"]) for r in got])
    poison = torch.tensor([r == "poison" for r in roles])
    print(f"{folder.name}: AUROC of the KL score {auroc(-kl, poison):.3f}, of the confidence {auroc(conf, poison):.3f}; "
          + ", ".join(f"mean confidence {role} {conf[torch.tensor([r == role for r in roles])].mean():.3f}"
                      for role in ("poison", "cover", "clean") if role in roles))


if __name__ == "__main__":
    analyse(Path(sys.argv[1]), Path(sys.argv[2]))
