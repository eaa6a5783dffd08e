"""Do the step-1 (poisoned) model's features split the target class into poison and its own images?

Usage: python benchmarks/analysis/target_class_features.py WORK/<run> [...]

The lost-class rule of step 7 tells a collapsed class's own images from the poison among its
suspects with the clean model's features (AUROC 0.78-0.93, lost_class_signals.py). The
spectral-signature idea reads the poisoned model instead: within one label, a backdoor
shows as a direction of its own in the penultimate features. For every class that holds
poison (and the target class of the clean control, which holds none), this prints the AUROC,
as a detector of the poison, of the projection on the top singular vector of the centred
features (raw and L2-normalised; the better of the two signs, since an SVD has no sign), and
the ratio of the top two singular values (a second mode would lift it). It needs only steps
1-2 of a benchmark run (run/train-poisoned) and the poisoned folder's ground truth.
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from meca_cli import steps
from meca_cli.core.evaluation import read_ground_truth
from meca_cli.core.metrics import auroc
from meca_cli.core.train import predict_with_features

TARGET = 1  # the cifar10-small protocol's target class


def top_direction(features: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Projection of the centred features on their top singular vector, and s1 / s2."""
    centred = features - features.mean(0)
    _, s, v = torch.linalg.svd(centred, full_matrices=False)
    return centred @ v[0], float(s[0] / s[1])


def main(runs: list[Path]) -> None:
    device = torch.device("cpu")
    common = steps.Common(device="cpu")
    for work in runs:
        data = steps.open_data(work / "data" / "train", common)
        roles = read_ground_truth(work / "data" / "train" / "ground_truth.csv")
        poison = torch.tensor([roles.get(i) == "poison" for i in range(len(data))])
        model, _ = steps.load_checkpoint(work / "run" / "train-poisoned" / "model.safetensors", data, device)
        _, features = predict_with_features(model, data.images, device)
        for c, name in enumerate(data.classes):
            rows = data.labels == c
            if not poison[rows].any() and c != TARGET:
                continue
            f = features[rows].double()
            raw, ratio = top_direction(f)
            normed, ratio_n = top_direction(F.normalize(f, dim=1))
            held = poison[rows]
            score = (lambda p: f"{max(auroc(p, held), 1 - auroc(p, held)):.3f}") if held.any() else (lambda p: "–")
            print(f"{work.name} {name}: {int(rows.sum())} images, {int(held.sum())} poison; AUROC raw {score(raw)}, "
                  f"normalised {score(normed)}; s1/s2 {ratio:.2f} raw, {ratio_n:.2f} normalised")


if __name__ == "__main__":
    main([Path(p) for p in sys.argv[1:]])
