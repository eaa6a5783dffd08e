"""The training loop shared by every step that fits a model (train, enhance, fine-tune).

One loop covers ordinary training and MeCa's learn/unlearn epochs: each sample carries a
weight, +1 to learn it and -lambda to unlearn it. Unlearning is either gradient ascent on
the label's loss (skipped for a sample whose loss already exceeds a ceiling, so it cannot
diverge) or descent towards the uniform prediction (bounded by construction).

Every random draw of epoch e comes from a generator seeded by (seed, e), so a run resumed
from the state saved after epoch e is bitwise identical on CPU to one never interrupted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from meca_cli.core.augment import cut_mix, flip_crop
from meca_cli.core.device import autocast, eval_batch_size, prepare_model, stage, to_float
from meca_cli.core.fold import inference_model
from meca_cli.core import dist
from meca_cli.config import TrainConfig


def lr_at(cfg: TrainConfig, step: int, total: int) -> float:
    if cfg.schedule == "constant":
        return cfg.lr
    warm = max(1, int(cfg.warmup * total))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    return cfg.lr * max(0.0, (total - step) / max(1, total - warm))


def unlearning_loss(logits: torch.Tensor, per_sample: torch.Tensor, w: torch.Tensor, mode: str,
                    ceiling: float) -> torch.Tensor:
    """Per-sample loss: w * CE where w > 0; where w < 0, |w| times the unlearning objective.

    "ascent": -CE, stopped once CE exceeds the ceiling. "uniform": cross-entropy to the
    uniform distribution, which erases the label's evidence without pushing the sample
    into another class (ascent tends to collapse everything into one class).
    """
    learn = torch.where(w > 0, w * per_sample, torch.zeros_like(per_sample))
    if mode == "uniform":
        to_uniform = -F.log_softmax(logits, dim=1).mean(dim=1)
        return learn + torch.where(w < 0, -w * to_uniform, torch.zeros_like(per_sample))
    active = (w < 0) & (per_sample.detach() < ceiling)
    return learn + torch.where(active, w * per_sample, torch.zeros_like(per_sample))


def effective_epochs(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """cfg.epochs, or more when that many epochs would take fewer than cfg.min_steps steps."""
    return max(cfg.epochs, math.ceil(cfg.min_steps / steps_per_epoch))


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                           weight_decay=cfg.weight_decay)


# ---- resumable state --------------------------------------------------------------------------


def save_state(path: Path, model: nn.Module, opt: torch.optim.Optimizer, epoch: int, tag: str) -> None:
    from meca_cli.core.models import unwrap
    from meca_cli.store.checkpoint import save_tensors

    base = unwrap(model)
    tensors = {f"model.{k}": v for k, v in base.state_dict().items()}
    names = {id(p): n for n, p in base.named_parameters()}
    for group in opt.param_groups:
        for p in group["params"]:
            buf = opt.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                tensors[f"opt.{names[id(p)]}"] = buf
    save_tensors(path, tensors, {"meca.format": "meca-train-state-1", "epoch": str(epoch), "tag": tag})


def load_state(path: Path, model: nn.Module, opt: torch.optim.Optimizer, tag: str) -> int:
    """Restore model and optimizer from `path`; return the number of epochs done (0 if unusable)."""
    from meca_cli.core.models import unwrap
    from meca_cli.errors import ArtifactError
    from meca_cli.store.checkpoint import load_tensors

    if not path.is_file():
        return 0
    try:
        tensors, meta = load_tensors(path)
    except ArtifactError:
        return 0
    if meta.get("tag") != tag:
        return 0  # state of another configuration: start over
    base = unwrap(model)
    base.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    params = dict(base.named_parameters())
    for key, value in tensors.items():
        if key.startswith("opt."):
            p = params[key[4:]]
            # In the parameter's own layout (saved contiguous), so a resumed run steps as an unbroken one.
            opt.state[p]["momentum_buffer"] = torch.empty_like(p).copy_(value)
    return int(meta.get("epoch", "0"))


@dataclass(frozen=True)
class Subsample:
    """A training pool drawn afresh every epoch: all of `always` and a random `share` of
    `sampled` (the fine-tune's suspects and its clean split), the same size each epoch."""

    always: torch.Tensor
    sampled: torch.Tensor
    share: float

    @property
    def drawn(self) -> int:  # of `sampled`, each epoch
        return round(self.share * len(self.sampled))

    def __len__(self) -> int:
        return len(self.always) + self.drawn

    def draw(self, gen: torch.Generator) -> torch.Tensor:
        return torch.cat([self.always, self.sampled[torch.randperm(len(self.sampled), generator=gen)[:self.drawn]]])


# ---- the loop ---------------------------------------------------------------------------------


def fit(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    cfg: TrainConfig,
    device: torch.device,
    indices: torch.Tensor | Subsample | None = None,
    sample_weights: torch.Tensor | None = None,
    ascent_ceiling: float = math.inf,
    unlearn: str = "ascent",
    state_path: Path | None = None,
    state_tag: str = "",
    on_epoch: Callable[[int, dict], None] | None = None,
    loss_flood: float | None = None,
    cutmix: float = 0.0,
) -> nn.Module:
    """Train `model` on images[indices] with labels, in place; returns the (unwrapped) model.
    With a Subsample for indices, each epoch trains on a fresh draw of it.

    sample_weights (per sample of the whole set) default to 1; negative weights unlearn.
    With state_path, progress is saved after every epoch and picked up on the next call.
    loss_flood (ABL's local gradient ascent) turns each sample's loss l into sign(l - g) * l,
    holding it near g; cutmix is the probability that a batch is CutMixed.
    """
    from meca_cli.console import progress

    model = prepare_model(model, device)
    images = stage(images, device)
    opt = make_optimizer(model, cfg)
    start = load_state(state_path, model, opt, state_tag) if state_path else 0
    train_model = dist.wrap_ddp(model, device)
    if isinstance(indices, Subsample):
        pool_size, pool_of = len(indices), indices.draw  # every rank draws the same pool from the same generator
    else:
        fixed = torch.arange(len(images)) if indices is None else torch.as_tensor(indices, dtype=torch.int64)
        pool_size, pool_of = len(fixed), lambda _gen: fixed
    weights = torch.ones(len(images)) if sample_weights is None else sample_weights.float()
    rank, world = dist.rank(), dist.world_size()
    per_rank = pool_size // world  # equal shards keep DDP's collective calls in step
    steps_per_epoch = max(1, math.ceil(per_rank / cfg.batch_size))
    epochs = effective_epochs(cfg, steps_per_epoch)
    total = steps_per_epoch * epochs
    with progress("train", total) as bar:
        bar.advance(steps_per_epoch * start)
        for epoch in range(start, epochs):
            gen = epoch_generator(cfg.seed, epoch)
            pool = pool_of(gen)
            order = pool[torch.randperm(len(pool), generator=gen)][rank * per_rank:(rank + 1) * per_rank]
            train_model.train()
            sums = {"loss": 0.0, "correct": 0, "seen": 0}
            # Even batches: a short last batch (1,153 images at 128 leave one) takes a full-lr
            # step on one sample's gradient and batch statistics, and can throw the run off.
            batches = order.tensor_split(steps_per_epoch) if cfg.even_batches else order.split(cfg.batch_size)
            for b, idx in enumerate(batches):
                if len(idx) == 0:
                    break
                for group in opt.param_groups:
                    group["lr"] = lr_at(cfg, epoch * steps_per_epoch + b, total)
                batch = images[idx].to(device, non_blocking=True)
                x = to_float(flip_crop(batch, gen) if cfg.augment else batch, device)  # augmented on the device, as uint8
                y = labels[idx].to(device)
                w = weights[idx].to(device)
                mixed = cutmix > 0 and float(torch.rand(1, generator=gen)) < cutmix
                if mixed:
                    x, y_pasted, kept = cut_mix(x, y, gen)
                with autocast(device):
                    logits = train_model(x)
                per_sample = F.cross_entropy(logits.float(), y, reduction="none", label_smoothing=cfg.label_smoothing)
                if mixed:
                    per_sample = kept * per_sample + (1 - kept) * F.cross_entropy(
                        logits.float(), y_pasted, reduction="none", label_smoothing=cfg.label_smoothing)
                if loss_flood is not None:
                    per_sample = torch.sign(per_sample.detach() - loss_flood) * per_sample
                loss = (unlearning_loss(logits.float(), per_sample, w, unlearn, ascent_ceiling)).sum() / len(idx)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sums["loss"] += float(loss.detach()) * len(idx)
                sums["correct"] += int((logits.argmax(1) == y).sum())
                sums["seen"] += len(idx)
                bar.advance(note=f"epoch {epoch + 1}/{epochs} loss {sums['loss'] / sums['seen']:.3f}")
            if state_path is not None and dist.is_primary():
                save_state(state_path, model, opt, epoch + 1, state_tag)
            if on_epoch is not None:
                on_epoch(epoch, {"loss": sums["loss"] / max(1, sums["seen"]),
                                 "train_acc": sums["correct"] / max(1, sums["seen"])})
    from meca_cli.core.models import unwrap

    return unwrap(model)


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, device: torch.device, batch_size: int | None = None,
                   indices: torch.Tensor | None = None, fold: bool = True) -> torch.Tensor:
    """Logits (float32, CPU) for images[indices] in eval mode, BatchNorm folded (core.fold);
    fold=False runs the model's own modules, for a hook on one of them. batch_size None: the
    device's fastest (config.EVAL_BATCH)."""
    batch_size = eval_batch_size(device, "predict", batch_size)
    model = inference_model(model, device) if fold else prepare_model(model, device).eval()
    images = stage(images, device)
    pool = torch.arange(len(images)) if indices is None else torch.as_tensor(indices, dtype=torch.int64)
    out: torch.Tensor | None = None
    for start in range(0, len(pool), batch_size):
        x = to_float(images[pool[start:start + batch_size]], device)
        with autocast(device):
            logits = model(x).float()
        # One output tensor filled in place: a small tensor kept per batch would pin heap
        # between the batch's large temporaries and let the process grow with the data set.
        if out is None:
            out = torch.empty(len(pool), logits.shape[1])
        out[start:start + len(x)] = logits.cpu()
    return out if out is not None else torch.empty(0, 0)


def predict_with_features(model: nn.Module, images: torch.Tensor, device: torch.device,
                          indices: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, features) for images[indices] in one pass; features are the input of the
    model's last linear layer (its representation, any architecture), float32 on the CPU."""
    model = inference_model(model, device)  # folded once here; the hook goes on this copy
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    captured: list[torch.Tensor] = []
    handle = last.register_forward_pre_hook(lambda _m, inputs: captured.append(inputs[0].detach().float().cpu()))
    try:
        logits = predict_logits(model, images, device, indices=indices, fold=False)  # already folded
    finally:
        handle.remove()
    return logits, torch.cat(captured) if captured else torch.empty(0, 0)
