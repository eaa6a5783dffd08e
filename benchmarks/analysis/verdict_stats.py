"""Per-class split and relabel outcome of finished benchmark runs, for the dataset verdict.

Usage: python benchmarks/analysis/verdict_stats.py benchmarks/work/cifar10-small/clean-s1 [...]

For each run folder (data/train with ground_truth.csv, run/ from meca sanitize), per class:
images, suspects, suspects relabelled to another class at step 7, poison among the class's
images, and the class's lift among the ROBUST (250) lowest KL scores of step 2 (its share
there over its share of the folder); then the first verdict's concentration statistic (the
most-suspected class's suspect rate over the other classes' median rate, "poisoned" at 3; the
shipped verdict reads the step-1 scores instead, see verdict_candidates.py) and, for that class, the share of its suspects that step 7 moved away. Two candidate
signals of poison that a collapse of the enhanced model onto a clean class would not give:
the target's poison moved away by step 7, and the robust poison crowding into one class.
"""

import csv
import statistics
import sys
from pathlib import Path

ROBUST = 250
CONCENTRATION = 3.0  # the first verdict's threshold


def rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def analyse(folder: Path) -> None:
    split = rows(folder / "run/split/split.csv")
    relabeled = rows(folder / "run/relabel/relabeled.csv")
    truth = rows(folder / "data/train/ground_truth.csv")
    scores = rows(folder / "run/score/scores.csv")
    classes = max(int(r["label"]) for r in split) + 1
    count, suspects, moved, poison = ([0] * classes for _ in range(4))
    for s, r, t in zip(split, relabeled, truth, strict=True):
        c = int(s["label"])
        count[c] += 1
        poison[c] += t["role"] == "poison"
        if s["verdict"] == "suspected":
            suspects[c] += 1
            moved[c] += r["new_label"] != r["old_label"]
    robust = [0] * classes
    for r in sorted(scores, key=lambda r: float(r["kl"]))[:ROBUST]:
        robust[int(r["label"])] += 1
    lift = [(k / ROBUST) / max(1e-9, n / len(split)) for k, n in zip(robust, count)]
    rates = [s / max(1, n) for s, n in zip(suspects, count)]
    top = max(range(classes), key=rates.__getitem__)
    others = statistics.median(rates[:top] + rates[top + 1:])
    concentration = rates[top] / others if others > 0 else float("inf")
    print(folder.name)
    print("  class  images  suspects  moved  poison  robust lift")
    for c in range(classes):
        print(f"  {c:5d} {count[c]:7d} {suspects[c]:9d} {moved[c]:6d} {poison[c]:7d} {lift[c]:12.2f}")
    print(f"  top class {top}: rate {rates[top]:.3f}, others' median {others:.3f}, "
          f"concentration {concentration:.1f} ({'poisoned' if concentration >= CONCENTRATION else 'clean'}), "
          f"moved share of its suspects {moved[top] / max(1, suspects[top]):.3f}; "
          f"highest robust lift {max(lift):.2f} (class {lift.index(max(lift))})")


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        analyse(Path(arg))
