"""Detection of two split rules on the saved enhanced models of finished benchmark runs.

Usage: python benchmarks/analysis/split_rules.py benchmarks/work/cifar10-small/sig-s0 [...]

For each run folder (data/train with ground_truth.csv, run/enhance/model.safetensors from
meca sanitize): the share of all images the enhanced model predicts as each class, and the
poison recall / FPR of
- agreement (the shipped rule): argmax == given label;
- class-calibrated: agreement, and p(label) above the q-quantile of p(that class) over the
  images labelled otherwise, so a class the model predicts for everything (the one-class
  collapse) needs more than its default confidence to be suspected.
"""

import sys
from pathlib import Path

import torch

from meca_cli import steps
from meca_cli.core.evaluation import read_ground_truth
from meca_cli.core.train import predict_logits

QUANTILES = (0.9, 0.99)


def analyse(folder: Path, common: steps.Common, device: torch.device) -> None:
    data = steps.open_data(folder / "data" / "train", common)
    model, _ = steps.load_checkpoint(folder / "run" / "enhance" / "model.safetensors", data, device)
    probs = predict_logits(model, data.images, device).softmax(1)
    labels, classes = data.labels, probs.shape[1]
    roles = read_ground_truth(folder / "data" / "train" / "ground_truth.csv")
    poison = torch.tensor([roles[i] == "poison" for i in range(len(labels))])
    agree = probs.argmax(1) == labels
    conf = probs.gather(1, labels.view(-1, 1)).squeeze(1)

    def line(rule: str, suspected: torch.Tensor) -> str:
        recall = float((suspected & poison).sum()) / max(1, int(poison.sum()))
        fpr = float((suspected & ~poison).sum()) / max(1, int((~poison).sum()))
        return f"  {rule:24s} recall {100 * recall:5.1f} %  FPR {100 * fpr:5.1f} %"

    share = torch.bincount(probs.argmax(1), minlength=classes).float() / len(labels)
    print(folder.name)
    print("  predicted-class share:", [round(float(s), 2) for s in share])
    print(line("agreement", agree))
    for q in QUANTILES:
        floor = torch.stack([torch.quantile(probs[labels != c, c], q) for c in range(classes)])
        print(line(f"class-calibrated q={q}", agree & (conf > floor[labels])))


if __name__ == "__main__":
    common = steps.Common(device="cpu")
    for arg in sys.argv[1:]:
        analyse(Path(arg), common, torch.device("cpu"))
