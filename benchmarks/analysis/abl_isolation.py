"""ABL's isolation phase alone, on a finished benchmark run: does the poison's loss fall first?

Usage: python benchmarks/analysis/abl_isolation.py benchmarks/work/cifar10-small/badnet-s0 [sample|batch]

Trains a fresh model of the run's architecture and recipe on its poisoned folder for ABL's
isolation epochs with the local gradient ascent (LGA) loss, exactly as `meca bench
--defences abl` does, then prints the mean loss of the poison and of the clean samples, the
AUROC of low loss as a poison detector, and how many poisons the isolated lowest 1 % holds.

The second argument picks the reading of LGA: `sample` (the shipped one, the paper's formula:
sign(l - gamma) * l per sample) or `batch` (the same on the batch's mean loss).
"""

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

import meca_cli.core.train as train_module
from meca_cli import steps
from meca_cli.config import TrainConfig
from meca_cli.core.evaluation import read_ground_truth
from meca_cli.core.metrics import auroc
from meca_cli.core.models import build_model
from meca_cli.defences.abl import ABLConfig, lowest, per_sample_loss
from meca_cli.store.checkpoint import load_model


def use_batch_lga(gamma: float) -> None:
    """Swap fit's per-sample loss for one whose sum is sign(mean - gamma) * mean."""
    per_sample_loss_of_fit = train_module.unlearning_loss

    def batch_lga(*args, **kwargs):
        losses = per_sample_loss_of_fit(*args, **kwargs)
        return torch.sign(losses.detach().mean() - gamma) * losses

    train_module.unlearning_loss = batch_lga


def main(folder: Path, reading: str) -> None:
    cfg, device = ABLConfig(), torch.device("cpu")
    _, meta = load_model(folder / "no-defence" / "model.safetensors", device)
    recipe = TrainConfig(**meta.config)
    data = steps.open_data(folder / "data" / "train", steps.Common())
    roles = read_ground_truth(folder / "data" / "train" / "ground_truth.csv")
    poison = torch.tensor([roles[i] == "poison" for i in range(len(data))])
    if reading == "batch":
        use_batch_lga(cfg.gamma)
    torch.manual_seed(recipe.seed)
    model = build_model(meta.arch, len(meta.classes), meta.image_size)
    isolation = replace(recipe, epochs=cfg.isolation_epochs, min_steps=0, schedule="constant")
    started = time.monotonic()
    model = train_module.fit(model, data.images, data.labels, isolation, device,
                             loss_flood=None if reading == "batch" else cfg.gamma)
    losses = per_sample_loss(model, data.images, data.labels, device)
    isolated = lowest(losses, cfg.isolation_fraction)
    print(json.dumps({"run": folder.name, "lga": reading, "epochs": cfg.isolation_epochs,
                      "mean_loss_poison": round(float(losses[poison].mean()), 3),
                      "mean_loss_clean": round(float(losses[~poison].mean()), 3),
                      "auroc_low_loss": round(float(auroc(-losses, poison)), 3),
                      "poison_isolated": int(poison[isolated].sum()), "isolated": len(isolated),
                      "seconds": round(time.monotonic() - started)}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "sample")
