"""Offline: split rules that also read the enhancement's earlier rounds, scored on a finished run.

Usage: python benchmarks/analysis/split_by_rounds.py benchmarks/work/v13/cifar10-small/blend-s1 [...]

The shipped split suspects a sample when the final enhanced model agrees with its label.
Poison that the last rounds unlearn escapes it (Blend). Every round's scores file holds the
predictions and label confidences of the model before that round's epoch
(enhance/rounds/round{t}_scores.csv), so a rule that also suspects what an earlier round's
model held can be scored here against the ground truth without training anything:

  final            the shipped rule (split.csv)
  final|rT         also suspected: agreed with by the model before round T
  final|rT>=c      also suspected: that model gives the label at least c

Printed per rule: recall and FPR (poison as positives; cover samples count as negatives),
and the suspects' share of the folder. What each rule would do to the final model is not
measured here: that needs train-clean and relabel run on its split.
"""

import csv
import sys
from pathlib import Path


def rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def rates(suspected: list[bool], poison: list[bool]) -> tuple[float, float, float]:
    positives = sum(poison) or 1
    negatives = (len(poison) - sum(poison)) or 1
    tp = sum(s and p for s, p in zip(suspected, poison))
    fp = sum(s and not p for s, p in zip(suspected, poison))
    return tp / positives, fp / negatives, sum(suspected) / len(suspected)


def analyse(folder: Path) -> None:
    split = rows(folder / "run/split/split.csv")
    poison = [t["role"] == "poison" for t in rows(folder / "data/train/ground_truth.csv")]
    final = [r["verdict"] == "suspected" for r in split]
    rounds = sorted((folder / "run/enhance/rounds").glob("round*_scores.csv"),
                    key=lambda p: int(p.name[5:].split("_")[0]))
    print(folder.name)
    rules = {"final": final}
    for path in rounds[-3:]:
        t = path.name[5:].split("_")[0]
        scored = rows(path)
        agreed = [r["pred"] == r["label"] for r in scored]
        rules[f"final|r{t}"] = [f or a for f, a in zip(final, agreed)]
        for c in (0.9, 0.99):
            rules[f"final|r{t}>={c}"] = [f or float(r["conf"]) >= c for f, r in zip(final, scored)]
    for name, suspected in rules.items():
        recall, fpr, share = rates(suspected, poison)
        print(f"  {name:16s} recall {100 * recall:5.1f} %  FPR {100 * fpr:5.1f} %  suspected {100 * share:5.1f} %")


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        analyse(Path(arg))
