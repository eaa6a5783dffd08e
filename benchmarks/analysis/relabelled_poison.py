"""Which labels step 7 gave the poison of a finished benchmark run.

Usage: python benchmarks/analysis/relabelled_poison.py WORK/<run> [...]

Counts the flagged poison by its label after relabelling (run/relabel/relabeled.csv): kept
as the poisoned label, changed to another class, or left out (-1); and the poison the split
did not flag (trained on as is by both the step-6 and the final model).
"""

import sys
from collections import Counter
from pathlib import Path

from meca_cli.store.artifacts import read_index_list
from verdict_stats import rows  # this folder: run as a script


def analyse(folder: Path) -> None:
    truth = rows(folder / "data/train/ground_truth.csv")
    relabelled = {int(r["index"]): r for r in rows(folder / "run/relabel/relabeled.csv")}
    suspected = set(read_index_list(folder / "run/split/suspected.idx"))
    fates: Counter = Counter()
    for i, t in enumerate(truth):
        if t["role"] != "poison":
            continue
        r = relabelled[i]
        if i not in suspected:
            fates["not flagged"] += 1
        elif r["new_label"] == "-1":
            fates["left out"] += 1
        elif r["new_label"] == r["old_label"]:
            fates["kept the poisoned label"] += 1
        else:
            fates["relabelled to another class"] += 1
    print(f"{folder.name}: " + ", ".join(f"{k} {v}" for k, v in fates.most_common()))


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        analyse(Path(arg))
