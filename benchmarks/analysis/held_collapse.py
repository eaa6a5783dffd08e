"""Whether the enhanced model holds a class's suspects because of a trigger or because it
collapsed onto the class, for finished runs.

Usage: python benchmarks/analysis/held_collapse.py WORK/<run> [...]

For each run folder (data/train with ground_truth.csv, run/ from meca sanitize): per class
with held suspects (keeping their label at step 7, enhanced p(label) >= the shipped
held confidence), the held count (poison / clean), and the share of the images labelled
with *another* class that the enhanced model also gives this class at that confidence
(core.relabel.held_suspects spares the class above MAX_FOREIGN_HELD).
A trigger is held only where it is; a collapse holds the other classes' images too.
"""

import sys
from pathlib import Path

import torch

from meca_cli import steps
from meca_cli.config import RelabelConfig
from meca_cli.core.train import predict_logits
from meca_cli.store.checkpoint import load_model
from verdict_stats import rows  # this folder: run as a script


def analyse(folder: Path) -> None:
    split = rows(folder / "run/split/split.csv")
    relabeled = rows(folder / "run/relabel/relabeled.csv")
    truth = rows(folder / "data/train/ground_truth.csv")
    data = steps.open_data(folder / "data/train", steps.Common(device="cpu"))
    model, _ = load_model(folder / "run/enhance/model.safetensors", torch.device("cpu"))
    probs = predict_logits(model, data.images, torch.device("cpu")).softmax(1)
    labels = data.labels
    th = RelabelConfig.held_confidence
    keeping = torch.tensor([s["verdict"] == "suspected" and r["new_label"] in (r["old_label"], "-1")
                            for s, r in zip(split, relabeled, strict=True)])
    poison = torch.tensor([t["role"] == "poison" for t in truth])
    held = keeping & (probs.gather(1, labels.view(-1, 1)).squeeze(1) >= th)
    print(folder.name)
    for c in range(probs.shape[1]):
        mine = held & (labels == c)
        if not mine.any():
            continue
        share = float((probs[labels != c, c] >= th).float().mean())  # the statistic of core.relabel
        print(f"  class {c}: held {int(mine.sum())} of {int((keeping & (labels == c)).sum())} label-keeping "
              f"(poison {int((mine & poison).sum())}, clean {int((mine & ~poison).sum())}); "
              f"images labelled otherwise held as {c}: {share:.2%}")


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        analyse(Path(arg))
