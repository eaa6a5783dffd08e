"""Which of step 7's changes of label are right, and which would `relabel.relabel_confidence`
leave out?

Usage: python benchmarks/analysis/relabel_changes.py benchmarks/work/v13/cifar10-small/clean-s0 [...]

A run folder of `meca bench` (its relabel step at relabel_confidence 0). Per run: the
suspects whose label step 7 changed, how many of those new labels differ from the image's
true class, and, at each threshold, how many changes the clean model makes at a lower
confidence (left out at that threshold): wrong ones, and right ones on poison (a triggered
image relabelled to its true class, which teaches the final model to ignore the trigger).
"""

import sys
from pathlib import Path

import torch

from meca_cli import steps
from meca_cli.core.evaluation import read_ground_truth
from meca_cli.core.train import predict_logits
from meca_cli.store.artifacts import read_csv


def main(runs: list[Path]) -> None:
    device = torch.device("cpu")
    for run in runs:
        train = run / "data" / "train"
        data = steps.open_data(train, steps.Common("cpu", 32, None, False, False))
        roles = read_ground_truth(train / "ground_truth.csv")
        true = torch.tensor([int(row["original_label"]) for row in read_csv(train / "ground_truth.csv", ("original_label",))])
        new = steps.read_label_table(run / "run" / "relabel" / "relabeled.csv", len(data), len(data.classes))
        suspects = torch.tensor([int(i) for i in (run / "run" / "split" / "suspected.idx").read_text().split()])
        model, _ = steps.load_checkpoint(run / "run" / "train-clean" / "model.safetensors", data, device)
        conf = predict_logits(model, data.images, device, indices=suspects).softmax(1).max(1).values
        changed = (new[suspects] != data.labels[suspects]) & (new[suspects] >= 0)
        wrong = changed & (new[suspects] != true[suspects])
        poison = torch.tensor([roles.get(int(i)) == "poison" for i in suspects])
        cells = [f"{run.name}: {len(suspects)} suspects, {int(changed.sum())} changed, {int(wrong.sum())} of them wrong"]
        for tau in (0.5, 0.7, 0.9):
            out = changed & (conf < tau)
            cells.append(f"under {tau}: {int(out.sum())} left out, {int((out & wrong).sum())} wrong, "
                         f"{int((out & ~wrong & poison).sum())} poison relabelled right")
        print("; ".join(cells), flush=True)


if __name__ == "__main__":
    main([Path(p) for p in sys.argv[1:]])
