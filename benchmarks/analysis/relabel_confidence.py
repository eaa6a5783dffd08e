"""Among a finished run's suspects, does the clean model's confidence tell poison from the
target class's own images?

Usage: python benchmarks/analysis/relabel_confidence.py benchmarks/work/cifar10-small/badnet-s0 [...]

When the split flags a whole class, the clean model (step 6) never saw it and calls its
images by the nearest other class. If it were less sure of those than of the poison (whose
true class it knows), its confidence could pick out the class's own images and keep their
label. Prints, per run, the AUROC of the clean model's top probability as a poison detector
among the suspects, and how many of each group a confidence threshold would relabel.
"""

import sys
from pathlib import Path

import torch

from meca_cli import steps
from meca_cli.core.evaluation import read_ground_truth
from meca_cli.core.metrics import auroc
from meca_cli.core.train import predict_logits


def main(runs: list[Path]) -> None:
    device = torch.device("cpu")
    for run in runs:
        data = steps.open_data(run / "data" / "train", steps.Common("cpu", 32, None, False, False))
        roles = read_ground_truth(run / "data" / "train" / "ground_truth.csv")
        suspects = torch.tensor([int(i) for i in (run / "run" / "split" / "suspected.idx").read_text().split()])
        model, _ = steps.load_checkpoint(run / "run" / "train-clean" / "model.safetensors", data, device)
        conf, pred = predict_logits(model, data.images, device, indices=suspects).softmax(1).max(1)
        poison = torch.tensor([roles.get(int(i)) == "poison" for i in suspects])
        moved = pred != data.labels[suspects]
        print(f"{run.name}: {len(suspects)} suspects, {int(poison.sum())} poison; AUROC of the clean model's "
              f"confidence {auroc(conf, poison):.3f}; median confidence poison {conf[poison].median():.2f}, "
              f"others {conf[~poison].median():.2f}")
        for tau in (0.5, 0.7, 0.9):
            relabel = moved & (conf >= tau)
            print(f"  relabel only at confidence >= {tau}: poison relabelled {int((relabel & poison).sum())}"
                  f"/{int(poison.sum())}, others keeping their label {int((~relabel & ~poison).sum())}"
                  f"/{int((~poison).sum())}")


if __name__ == "__main__":
    main([Path(a) for a in sys.argv[1:]])
