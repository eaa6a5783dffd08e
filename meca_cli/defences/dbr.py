"""DBR: decoupling-based backdoor removal (Chen et al., NeurIPS 2022), clean-data-free.

A poisoned sample's representation is carried by its trigger, which a rotation or an affine
distortion breaks, so its representation moves far more under them than a clean sample's
(feature consistency towards transformations, FCT). The samples with the highest FCT are
the suspects, those with the lowest are trusted as clean; the model then relearns the
trusted samples while unlearning the suspects.

This implementation repairs the run's no-defence model with the FCT of its own
representation; the paper also trains a new self-supervised backbone first, which is left
out here (one more full training per run).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from meca_cli.config import TrainConfig


@dataclass(frozen=True)
class DBRConfig:
    suspect_fraction: float = 0.05  # highest FCT: unlearned
    trusted_fraction: float = 0.5  # lowest FCT: relearned
    epochs: int = 10
    lr: float = 0.01
    batch_size: int = 128
    unlearn_ceiling: float = 5.0  # stop ascending a suspect's loss beyond this
    seed: int = 0


def transforms(x: torch.Tensor) -> list[torch.Tensor]:
    """The rotation (90 degrees) and the affine distortion (scale 0.8, shift 10 %) of a float batch."""
    theta = torch.tensor([[1 / 0.8, 0.0, 0.1], [0.0, 1 / 0.8, 0.1]], dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
    return [torch.rot90(x, 1, dims=(2, 3)), F.grid_sample(x, grid, padding_mode="reflection", align_corners=False)]


@torch.no_grad()
def feature_consistency(model: nn.Module, images: torch.Tensor, device: torch.device,
                        batch_size: int = 512) -> torch.Tensor:
    """FCT per sample: mean squared distance of the representation under each transformation."""
    from meca_cli.core.device import prepare_model, to_float

    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    captured: list[torch.Tensor] = []
    handle = last.register_forward_pre_hook(lambda _m, inputs: captured.append(inputs[0].detach().float()))
    model = prepare_model(model, device).eval()
    out = []
    try:
        for start in range(0, len(images), batch_size):
            x = to_float(images[start:start + batch_size], device)
            captured.clear()
            for view in [x, *transforms(x)]:
                model(view)
            base, *moved = captured
            out.append(torch.stack([((m - base) ** 2).sum(1) for m in moved]).mean(0).cpu())
    finally:
        handle.remove()
    return torch.cat(out)


def dbr(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device,
        cfg: DBRConfig = DBRConfig()) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Returns the repaired model, the suspects (mask) and every sample's FCT."""
    from meca_cli.core.train import fit

    fct = feature_consistency(model, images, device)
    order = torch.sort(fct, descending=True, stable=True).indices
    suspects = order[:max(1, round(cfg.suspect_fraction * len(fct)))]
    trusted = order[len(order) - max(1, round(cfg.trusted_fraction * len(fct))):]
    weights = torch.zeros(len(images))
    weights[trusted] = 1.0
    weights[suspects] = -1.0
    train = TrainConfig(epochs=cfg.epochs, min_steps=0, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed)
    model = fit(model, images, labels, train, device, indices=torch.cat([trusted, suspects]).sort().values,
                sample_weights=weights, ascent_ceiling=cfg.unlearn_ceiling)
    mask = torch.zeros(len(images), dtype=torch.bool)
    mask[suspects] = True
    return model, mask, fct
