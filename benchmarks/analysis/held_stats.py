"""What relabel's --drop-held would leave out of finished benchmark runs, per threshold.

Usage: python benchmarks/analysis/held_stats.py benchmarks/work/cifar10-small/sig-s1 [...]

For each run folder (data/train with ground_truth.csv, run/ from meca sanitize): the
suspects that keep their given label at step 7 (a new label equal to the given one, or -1
where the run already left them out), split into poison and clean, and how many of each
the enhanced model still gives their label at least each threshold (split.csv's
enhanced_conf). The rule should take the poison and leave the clean images. Whether a class
is spared as a collapse: held_collapse.py.
"""

import sys
from pathlib import Path

from verdict_stats import rows  # this folder: run as a script

THRESHOLDS = (0.99, 0.995, 0.999, 0.9999)


def analyse(folder: Path) -> None:
    split = rows(folder / "run/split/split.csv")
    relabeled = rows(folder / "run/relabel/relabeled.csv")
    truth = rows(folder / "data/train/ground_truth.csv")
    keeping = [(float(s["enhanced_conf"]), t["role"] == "poison", s["label"])
               for s, r, t in zip(split, relabeled, truth, strict=True)
               if s["verdict"] == "suspected" and r["new_label"] in (r["old_label"], "-1")]
    poison = sum(p for _, p, _ in keeping)
    cells = [f"{th:g}: poison {sum(p and c >= th for c, p, _ in keeping)}/{poison}, "
             f"clean {sum(not p and c >= th for c, p, _ in keeping)}/{len(keeping) - poison}" for th in THRESHOLDS]
    print(f"{folder.name}: suspects keeping their label held at " + " | ".join(cells))


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        analyse(Path(arg))
