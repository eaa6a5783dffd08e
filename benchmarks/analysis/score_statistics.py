"""Which statistic of the same perturbation ranks the poison best at step 2? KL against
scale-free alternatives, on finished benchmark runs.

Usage: python benchmarks/analysis/score_statistics.py WORK/<run> [...]

The shipped score is the KL between the softmax before and after the patch-restricted FGSM
step. A saturated softmax barely moves under any perturbation, so the KL also measures how
confident the model is, which a well-fitted clean image shares with the poison. Here the
step-1 model's logits z (clean) and z' (perturbed, the shipped eps, patch and masks) give,
per sample (low = robust = suspicious, as for the KL):

  kl             the shipped score
  margin_drop    m - m', m the logit margin of the predicted class over the runner-up
  margin_rel     (m - m') / m: the share of the margin the perturbation takes
  logit_rel      |z - z'| / |z|
  grad_patch     the L1 norm of the loss's input gradient inside the patch (first order)
  -margin        the margin alone (high margin = suspicious), to see how much of the KL
                 ranking is confidence

Prints each statistic's AUROC for the poison, and the poison among its 10 % lowest values.
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from meca_cli import steps
from meca_cli.config import ScoreConfig
from meca_cli.core.device import to_float
from meca_cli.core.fold import inference_model
from meca_cli.core.metrics import auroc
from meca_cli.core.scoring import kl_divergence, patch_mask, patch_positions
from verdict_stats import rows  # this folder: run as a script


def margin(logits: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    top = logits.gather(1, pred.view(-1, 1)).squeeze(1)
    others = logits.scatter(1, pred.view(-1, 1), float("-inf")).max(1).values
    return top - others


def statistics(model, images: torch.Tensor, cfg: ScoreConfig) -> dict[str, torch.Tensor]:
    corners = patch_positions(len(images), images.shape[-1], cfg)
    out: dict[str, list[torch.Tensor]] = {}
    for lo in range(0, len(images), cfg.batch_size):
        x = to_float(images[lo:lo + cfg.batch_size], torch.device("cpu")).requires_grad_(True)
        z = model(x).float()
        pred = z.argmax(1)
        (grad,) = torch.autograd.grad(F.cross_entropy(z, pred, reduction="sum"), x)
        mask = patch_mask(corners[lo:lo + cfg.batch_size, 0], x.shape[-1], cfg.patch)
        with torch.no_grad():
            z = z.detach()
            shifted = model((x + mask * cfg.eps * grad.sign()).clamp(0, 1)).float()
            m, m2 = margin(z, pred), margin(shifted, pred)
            batch = {
                "kl": kl_divergence(z, shifted).clamp_min(0),
                "margin_drop": m - m2,
                "margin_rel": (m - m2) / m.clamp_min(1e-6),
                "logit_rel": (z - shifted).norm(dim=1) / z.norm(dim=1).clamp_min(1e-6),
                "grad_patch": (grad.abs() * mask).flatten(1).sum(1),
                "-margin": -m,
            }
        for k, v in batch.items():
            out.setdefault(k, []).append(v)
    return {k: torch.cat(v) for k, v in out.items()}


def analyse(folder: Path) -> None:
    common = steps.Common(device="cpu")
    dataset = steps.open_data(folder / "data/train", common)
    model, _ = steps.load_checkpoint(folder / "run/train-poisoned/model.safetensors", dataset, torch.device("cpu"))
    model = inference_model(model, torch.device("cpu"))
    poison = torch.tensor([r["role"] == "poison" for r in rows(folder / "data/train/ground_truth.csv")])
    stats = statistics(model, dataset.images, ScoreConfig())
    n = len(dataset)
    cells = []
    for name, value in stats.items():
        lowest = torch.sort(value, stable=True).indices[: n // 10]
        cells.append(f"{name} {auroc(-value, poison):.3f}/{100 * float(poison[lowest].sum()) / max(1, int(poison.sum())):.0f}%")
    print(f"{folder.name:18s} " + "  ".join(cells))


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        analyse(Path(arg))
