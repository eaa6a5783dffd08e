"""Can the suspects of a wholly flagged class be told apart by their neighbours?

Usage: python benchmarks/analysis/lost_class_knn.py benchmarks/work/cifar10-small/badnet-s0 [...]

The clean model (step 6) was trained without the suspects. In its feature space a poison
(an airplane carrying a trigger) should sit among the clean airplanes, while an image of
the flagged class itself has no clean neighbours of its kind, only other suspects. Per
suspect: novelty = mean distance to its k nearest clean images minus mean distance to its k
nearest fellow suspects (L2-normalised penultimate features). Prints the AUROC of novelty
as a detector of the non-poison among the suspects, and what keeping the label where
novelty > 0, in the classes the split flagged (almost) whole, would keep.
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from meca_cli import steps
from meca_cli.core.evaluation import read_ground_truth
from meca_cli.core.metrics import auroc
from meca_cli.core.partition import mostly_suspected_classes
from meca_cli.core.relabel import mean_knn_distance
from meca_cli.core.train import predict_with_features

K = 10


def main(runs: list[Path]) -> None:
    for run in runs:
        data = steps.open_data(run / "data" / "train", steps.Common("cpu", 32, None, False, False))
        gt = run / "data" / "train" / "ground_truth.csv"
        roles = read_ground_truth(gt) if gt.is_file() else {}
        suspected = torch.zeros(len(data), dtype=torch.bool)
        suspected[[int(i) for i in (run / "run" / "split" / "suspected.idx").read_text().split()]] = True
        model, _ = steps.load_checkpoint(run / "run" / "train-clean" / "model.safetensors", data, torch.device("cpu"))
        feats = F.normalize(predict_with_features(model, data.images, torch.device("cpu"))[1], dim=1)
        sus = suspected.nonzero().squeeze(1)
        novelty = (mean_knn_distance(feats[sus], feats[~suspected], K)
                   - mean_knn_distance(feats[sus], feats[sus], K, skip_self=True))
        poison = torch.tensor([roles.get(int(i)) == "poison" for i in sus])
        lost = mostly_suspected_classes(suspected, data.labels, len(data.classes))
        in_lost = torch.isin(data.labels[sus], torch.tensor(list(lost), dtype=torch.int64))
        keep = (novelty > 0) & in_lost
        print(f"{run.name}: {len(sus)} suspects, {int(poison.sum())} poison, AUROC(novelty, not poison) "
              f"{auroc(novelty, ~poison) if 0 < int(poison.sum()) < len(sus) else float('nan'):.3f}; "
              f"mostly suspected: {[data.classes[c] for c in lost]}, holding {int(in_lost.sum())} suspects "
              f"({int((in_lost & poison).sum())} poison); keeping the label where novelty > 0 there keeps "
              f"{int((keep & ~poison).sum())} of its own images and {int((keep & poison).sum())} poisons")


if __name__ == "__main__":
    main([Path(a) for a in sys.argv[1:]])
