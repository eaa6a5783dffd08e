"""The MeCa robustness score: s(x) = KL( f(x) || f(x + m * delta) ).

delta is one FGSM step of size eps against the model's own prediction (the given label
may be poisoned), and m a random r x r patch. A backdoored sample barely moves under such
a small local perturbation, a clean one does: low s = robust = suspicious.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from meca_cli.config import ScoreConfig
from meca_cli.core.device import autocast, eval_batch_size, stage, to_float
from meca_cli.core.fold import inference_model


@dataclass
class Scores:
    kl: torch.Tensor  # N, the robustness score
    pred: torch.Tensor  # N, the model's prediction
    loss: torch.Tensor  # N, cross-entropy on the given label
    conf: torch.Tensor  # N, softmax probability of the given label


def patch_positions(n: int, image_size: int, cfg: ScoreConfig) -> torch.Tensor:
    """Top-left corners (n x masks x 2) of every sample's patches, drawn once for the whole
    set so that a sample's masks depend only on its index and the seed, never on sharding."""
    gen = torch.Generator().manual_seed(cfg.seed)
    return torch.randint(0, image_size - cfg.patch + 1, (n, cfg.masks, 2), generator=gen)


def patch_mask(corners: torch.Tensor, image_size: int, patch: int) -> torch.Tensor:
    """B x 1 x S x S binary masks with a patch x patch square at each corner (B x 2)."""
    grid = torch.arange(image_size, device=corners.device)
    rows = (grid.view(1, -1) >= corners[:, :1]) & (grid.view(1, -1) < corners[:, :1] + patch)
    cols = (grid.view(1, -1) >= corners[:, 1:]) & (grid.view(1, -1) < corners[:, 1:] + patch)
    return (rows[:, :, None] & cols[:, None, :]).unsqueeze(1).float()


def kl_divergence(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """Per-row KL(softmax(p) || softmax(q))."""
    log_p = F.log_softmax(p_logits, dim=1)
    log_q = F.log_softmax(q_logits, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


def score_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, corners: torch.Tensor,
                cfg: ScoreConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(kl, pred, loss, conf) for one batch of float images in [0, 1]; model in eval mode."""
    x = x.detach().requires_grad_(True)
    with autocast(x.device):
        logits = model(x).float()
    pred = logits.argmax(1)
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, pred, reduction="sum"), x)
    step = cfg.eps * grad.sign()
    logits = logits.detach()
    kl = torch.zeros(len(x), device=x.device)
    with torch.no_grad():
        for k in range(cfg.masks):
            mask = patch_mask(corners[:, k], x.shape[-1], cfg.patch)
            with autocast(x.device):
                shifted = model((x + mask * step).clamp_(0, 1)).float()
            kl += kl_divergence(logits, shifted)
        loss = F.cross_entropy(logits, y, reduction="none")
        conf = F.softmax(logits, 1).gather(1, y.view(-1, 1)).squeeze(1)
    return (kl / cfg.masks).clamp_min(0), pred, loss, conf


def kl_scores(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, cfg: ScoreConfig,
              device: torch.device, start: int = 0, stop: int | None = None) -> Scores:
    """Score samples [start, stop) of the set (a shard); indices stay global."""
    from meca_cli.console import progress

    stop = len(images) if stop is None else stop
    model = inference_model(model, device)
    images = stage(images, device)
    corners = patch_positions(len(images), images.shape[-1], cfg)
    # Filled in place, not one small tensor per batch: those would pin heap between each
    # batch's large temporaries and let the process grow with the data set.
    n = stop - start
    batch = eval_batch_size(device, "score", cfg.batch_size)
    kl, loss, conf = torch.empty(n), torch.empty(n), torch.empty(n)
    pred = torch.empty(n, dtype=torch.int64)
    with progress("score", n) as bar:
        for lo in range(start, stop, batch):
            hi = min(stop, lo + batch)
            out = score_batch(model, to_float(images[lo:hi], device), labels[lo:hi].to(device),
                              corners[lo:hi].to(device), cfg)
            for column, values in zip((kl, pred, loss, conf), out):
                column[lo - start:hi - start] = values.cpu()
            bar.advance(hi - lo)
    return Scores(kl, pred, loss, conf)
