"""The dataset-level verdict: is this folder poisoned at all?

Step 5 marks every sample the enhanced model still agrees with as suspected, so a clean
folder gets suspects too. What separates a poisoned folder is *where* they sit: a backdoor
pulls its samples into one target class, where the enhanced model keeps agreeing with the
labels; the hope is that on clean data the unlearning erases agreement evenly across classes.

The statistic is the concentration of suspects: the suspect rate of the most-suspected
class divided by the median suspect rate of the other classes. Known weakness (measured,
README "Dataset verdict"): the enhanced model can collapse onto one class on clean data
too, which this statistic calls poisoned.
"""

from __future__ import annotations

import torch

from meca_cli.config import VerdictConfig


def dataset_verdict(labels: torch.Tensor, suspected: torch.Tensor, num_classes: int,
                    cfg: VerdictConfig = VerdictConfig()) -> dict:
    counts = torch.bincount(labels, minlength=num_classes).double().clamp_min(1)
    rates = torch.bincount(labels[suspected], minlength=num_classes).double() / counts
    top = int(rates.argmax())
    others = torch.cat([rates[:top], rates[top + 1:]])
    baseline = float(others.median()) if len(others) else 0.0
    concentration = float(rates[top]) / max(baseline, 1e-3)
    poisoned = concentration >= cfg.concentration
    # Suspects in the flagged class beyond what the other classes show: the poison estimate.
    excess = (float(rates[top]) - baseline) * float(counts[top]) if poisoned else 0.0
    return {
        "verdict": "poisoned" if poisoned else "clean",
        "concentration": round(concentration, 4),
        "threshold": cfg.concentration,
        "suspected_class": top if poisoned else None,
        "suspected_rate_top_class": round(float(rates[top]), 4),
        "suspected_rate_other_median": round(baseline, 4),
        "suspected_fraction": round(float(suspected.float().mean()), 4),
        "estimated_poison_fraction": round(max(0.0, excess) / max(1, len(labels)), 4),
    }
