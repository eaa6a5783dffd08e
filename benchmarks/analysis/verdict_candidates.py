"""The dataset-verdict candidates measured on the step-1 scores, beside the shipped verdict.

Usage: python benchmarks/analysis/verdict_candidates.py WORK/cifar10-small/*-s* [RUN ...]

WORK is a `meca bench --verdict` (or `meca bench`) work folder: each run holds
data/train/ground_truth.csv and run/score/scores.csv; a RUN is a `meca sanitize --out RUN`
folder (RUN/score/scores.csv, no ground truth). For each run, the class where each
statistic peaks and its value:

- outflow z: (label c predicted other - label other predicted c) / sqrt(their sum), the
  net flow of predictions out of a class (McNemar's statistic); not kept: a clean class
  reaches 6.6 and the model's leaning towards the poisoned class hides its outflow.
- contradicted: the share of a class's training errors whose label gets under 5 %
  probability, over the median class's; not kept: it fell to 1.67 on WaNet seed 1 where
  SIG seed 0 reached 1.66.
- lift 2.5 %: the class's share of the 2.5 % lowest KL scores over its share of the folder
  (an earlier candidate); class easiness reaches 3.04 on clean data.
- robust crowding and its z, error spread: the shipped statistics (meca_cli.core.verdict).

It also prints how many of the run's poisons the step-1 model fitted (predicts as labelled),
and its agreement with all the labels (the verdict is undetermined over `max_fit`).
"""

from __future__ import annotations

import csv
import math
import statistics
import sys
from pathlib import Path

import torch

from meca_cli import steps
from meca_cli.core.verdict import dataset_verdict


def peak(values: list[float]) -> str:
    top = max(range(len(values)), key=values.__getitem__)
    return f"{values[top]:.2f} ({top})"


def analyse(folder: Path) -> None:
    # A benchmark or demo run (data/train, run/), or a sanitize run folder of any data (score/).
    truth, scores = folder / "data/train/ground_truth.csv", folder / "run/score/scores.csv"
    if not scores.is_file():
        scores = folder / "score/scores.csv"
    roles = []
    if truth.is_file():
        with open(truth, encoding="utf-8") as f:
            roles = [r["role"] for r in csv.DictReader(f)]
    with open(scores, encoding="utf-8") as f:
        conf = [float(r["conf"]) for r in csv.DictReader(f)]
    s = steps.read_scores(scores)
    labels, pred, kl = s["label"].tolist(), s["pred"].tolist(), s["kl"]
    classes = max(labels) + 1
    out, inflow, errors, sure, count = ([0] * classes for _ in range(5))
    for y, p, c in zip(labels, pred, conf):
        count[y] += 1
        if p != y:
            out[y] += 1
            inflow[p] += 1
            errors[y] += 1
            sure[y] += c < 0.05
    z = [(o - i) / math.sqrt(max(1, o + i)) for o, i in zip(out, inflow)]
    share = [k / max(1, e) for k, e in zip(sure, errors)]
    contradicted = [v / max(1e-3, statistics.median(share[:c] + share[c + 1:])) for c, v in enumerate(share)]
    k = round(0.025 * len(labels))
    lowest = torch.argsort(kl, stable=True)[:k]
    tail = torch.bincount(s["label"][lowest], minlength=classes).tolist()
    lift = [(t / k) / (n / len(labels)) for t, n in zip(tail, count)]
    poison = [i for i, r in enumerate(roles) if r == "poison"]
    v = dataset_verdict(s["label"], kl, s["pred"], classes)
    spread = "-" if v["error_spread"] is None else f"{v['error_spread']:.3f} ({v['error_spread_class']})"
    print(f"{folder.name:20s} fitted {sum(pred[i] == labels[i] for i in poison)}/{len(poison)} | outflow z {peak(z)} | "
          f"contradicted {peak(contradicted)} | lift 2.5 % {peak(lift)} | robust {v['robust_crowding']:.2f} "
          f"z {v['robust_crowding_z']:.1f} ({v['robust_crowding_class']}) | spread {spread} | fit {v['fit']:.3f} | "
          f"{v['verdict']}")


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        analyse(Path(arg))
