"""Where a run loses its poison: the score and the unlearned set of every enhancement round.

Usage: python benchmarks/analysis/rounds.py benchmarks/work/cifar10-small/blend-s0 [...]

For each finished benchmark run folder (data/train/ground_truth.csv, run/ from meca
sanitize), one line per round (core.evaluation.round_metrics, which `meca bench` also
stores in each result's detection.rounds), then the split's poison recall. "confidence" is
the AUROC of the same model's probability of the given label (high = suspicious): below 0.5
the model has not fitted the poison, so the robustness score has no backdoor to find.
"""

import sys
from pathlib import Path

from meca_cli.core.evaluation import detection_metrics, round_metrics
from meca_cli.poisoning import GROUND_TRUTH


def analyse(folder: Path) -> None:
    truth = folder / "data" / "train" / GROUND_TRUTH
    print(folder.name)
    for r in round_metrics(folder / "run", truth):
        print(f"  round {r['round']}: AUROC {r['auroc']:.3f} (confidence {r['conf_auroc']:.3f})  unlearned {r['unlearned']:5d}, of them poison "
              f"{r['poison_unlearned']:4d} ({100 * r['poison_unlearned_share']:5.1f} % of the poison)")
    print(f"  split: poison recall {100 * detection_metrics(folder / 'run' / 'verdicts.csv', truth)['recall']:.1f} %")


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        analyse(Path(arg))
