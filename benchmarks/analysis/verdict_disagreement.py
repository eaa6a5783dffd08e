"""Does the clean model's confident disagreement with the given labels tell a poisoned folder
from a clean one, where the concentration of suspects does not?

Usage: python benchmarks/analysis/verdict_disagreement.py WORK/<run> [...]

A dirty-label poison is an image of one class labelled with another. The step-6 clean
model never trained on the suspects, so where the split caught the poison it names the
poison's true class, confidently: the poisoned folder's target class holds hundreds of
such images. On a clean folder the enhanced model collapses onto a class too (the
concentration statistic's false alarm), but the suspects there are the class's own images.
Per run and per class: images, suspects, suspects the clean model gives another class at
top probability >= CONF (each threshold), poison among the class's images; then, for the
class with the most such suspects per image, that rate over the median of the others.

Measured (docs/measurements.md, "Dataset verdict"): it does not separate them. The rate
grows with how much of a clean class the collapse takes, since the clean model then saw
little of that class: 0.034-0.044 on clean controls whose collapse took 43-44 % of a class,
0.073 and 0.138 on ones where it took 68 % and 72 %.
"""

import statistics
import sys
from pathlib import Path

import torch

from meca_cli import steps
from meca_cli.core.evaluation import read_ground_truth
from meca_cli.core.train import predict_logits
from meca_cli.store.artifacts import read_index_list

CONF = (0.5, 0.8, 0.9, 0.95)


def analyse(run: Path) -> None:
    cpu = torch.device("cpu")
    data = steps.open_data(run / "data" / "train", steps.Common("cpu", 32, None, False, False))
    roles = read_ground_truth(run / "data" / "train" / "ground_truth.csv")
    poison = torch.tensor([roles.get(i) == "poison" for i in range(len(data))])
    suspected = torch.zeros(len(data), dtype=torch.bool)
    suspected[read_index_list(run / "run" / "split" / "suspected.idx")] = True
    clean_model, _ = steps.load_checkpoint(run / "run" / "train-clean" / "model.safetensors", data, cpu)
    probs = predict_logits(clean_model, data.images, cpu).softmax(1)
    top, pred = probs.max(1)
    classes = len(data.classes)
    count = torch.bincount(data.labels, minlength=classes).double()
    print(f"{run.name}: {int(poison.sum())} poison, {int(suspected.sum())} suspects")
    for conf in CONF:
        moved = suspected & (pred != data.labels) & (top >= conf)
        per_class = torch.bincount(data.labels[moved], minlength=classes).double()
        rates = per_class / count
        c = int(rates.argmax())
        others = [float(r) for i, r in enumerate(rates) if i != c]
        median = statistics.median(others)
        poison_moved = int((moved & poison).sum())
        print(f"  conf {conf}: top class {c} ({data.classes[c]}) {int(per_class[c])} moved "
              f"({float(rates[c]):.3f} of its images, {int((moved & poison & (data.labels == c)).sum())} poison), "
              f"others' median {median:.4f}, ratio {float(rates[c]) / max(median, 1e-3):.1f}, "
              f"excess {float(rates[c] - median) * float(count[c]):.0f}; second {sorted(per_class.tolist())[-2]:.0f}; "
              f"poison moved {poison_moved}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    for a in sys.argv[1:]:
        analyse(Path(a))
