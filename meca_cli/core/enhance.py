"""Backdoor enhancement: rounds that learn D minus D_c and unlearn the growing clean set D_c.

What remains is a model that keeps the backdoor (its most robust feature) and forgets the
clean task, so its agreement with the given labels singles out the poisoned samples.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from meca_cli.config import EnhanceConfig, ScoreConfig, TrainConfig
from meca_cli.core import dist
from meca_cli.core.partition import rho_schedule, top_fraction
from meca_cli.core.scoring import Scores, kl_scores
from meca_cli.core.train import fit


def round_files(round_no: int) -> tuple[str, str]:
    """Where the enhance step keeps a re-scoring round's scores and unlearned set, relative to
    its output folder (round 1's are step 2's scores and the partition's seed clean set)."""
    return f"rounds/round{round_no}_scores.csv", f"rounds/round{round_no}_clean.idx"


@dataclass
class RoundLog:
    round: int
    rho: float
    clean_set: int
    # Accuracy on the given labels after the round (falls as the clean task is unlearned);
    # None until the next round's scoring measures it.
    agreement: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def enhance_round(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, clean_set: torch.Tensor,
                  cfg: EnhanceConfig, device: torch.device, round_index: int) -> nn.Module:
    """One round: weights +1 on D minus D_c, -lambda on D_c."""
    weights = torch.ones(len(images))
    weights[clean_set] = -cfg.lam
    train_cfg = TrainConfig(epochs=cfg.epochs_per_round, min_steps=0, batch_size=cfg.batch_size, lr=cfg.lr,
                            schedule="constant",
                            seed=cfg.seed + 7919 * (round_index + 1))
    return fit(model, images, labels, train_cfg, device, sample_weights=weights, ascent_ceiling=cfg.ceiling,
               unlearn=cfg.unlearn)


def enhance(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, seed_clean: torch.Tensor,
            cfg: EnhanceConfig, score_cfg: ScoreConfig, device: torch.device,
            state_path: Path | None = None, state_tag: str = "",
            on_round: Callable[[RoundLog], None] | None = None,
            on_rescore: Callable[[int, Scores, torch.Tensor], None] | None = None) -> tuple[nn.Module, list[RoundLog]]:
    """Run the rounds; round 1 unlearns the partition's seed clean set, later rounds re-score
    with the current model (every `cfg.rescore_every`-th round; the others reuse the last
    scores) and take the top rho_t (`on_rescore(round, scores, clean_set)` sees both; a
    round's agreement is None when no re-scoring measured it, and the last round's always:
    the caller measures the model it keeps, whose predictions the split reads too; `on_round`
    sees every other round). Progress is saved after every round."""
    from meca_cli.store.checkpoint import load_tensors, save_tensors
    from meca_cli.errors import ArtifactError

    rhos = rho_schedule(len(seed_clean) / len(images), cfg.rho_max, cfg.rounds)
    logs: list[RoundLog] = []
    scores: Scores | None = None  # the last re-scoring, which rounds without one reuse
    start = 0
    if state_path is not None and state_path.is_file():
        try:
            tensors, meta = load_tensors(state_path)
            if meta.get("tag") == state_tag:
                scores = _scores_from(tensors)
                model.load_state_dict({k: v for k, v in tensors.items() if not k.startswith(_SCORES_KEY)})
                logs = [RoundLog(**r) for r in json.loads(meta["rounds"])]
                start = len(logs)
        except (ArtifactError, KeyError, ValueError, RuntimeError):
            start, logs, scores = 0, [], None
    def agreement_of(pred: torch.Tensor) -> float:
        return float((pred == labels).float().mean())

    for t in range(start, cfg.rounds):
        if t == 0:
            clean_set = seed_clean
        else:
            fresh = rescores_before(t, cfg.rescore_every) or scores is None
            if fresh:
                # Under torchrun each rank scores its shard and all ranks get the joined scores.
                start_i, stop_i = dist.shard_range(len(images), dist.rank(), dist.world_size())
                scores = dist.gather_scores(kl_scores(model, images, labels, score_cfg, device, start_i, stop_i),
                                            len(images))
            by_confidence = cfg.last_round_by == "confidence" and t == cfg.rounds - 1
            clean_set = top_fraction(-scores.conf if by_confidence else scores.kl, rhos[t])
            if on_rescore is not None:
                on_rescore(t + 1, scores, clean_set)
            if logs[-1].agreement is None:
                if fresh:
                    # The scores' predictions are the previous round's model in eval mode: its
                    # agreement comes free here instead of from a separate pass over the data.
                    logs[-1].agreement = agreement_of(scores.pred)
                if on_round is not None:
                    on_round(logs[-1])
        model = enhance_round(model, images, labels, clean_set, cfg, device, t)
        logs.append(RoundLog(round=t + 1, rho=round(rhos[t], 6), clean_set=len(clean_set), agreement=None))
        if state_path is not None and dist.is_primary():
            save_tensors(state_path, {**model.state_dict(), **_scores_tensors(scores)},
                         {"tag": state_tag, "rounds": json.dumps([r.to_dict() for r in logs])})
    return model, logs


def rescores_before(t: int, every: int) -> bool:
    """Whether round t + 1 (t > 0) re-scores: rounds 2, 2 + every, 2 + 2 * every, ...; the
    others take their clean set from the last scores, at their own rho."""
    return (t - 1) % every == 0


_SCORES_KEY = "rescored."  # the last re-scoring, saved beside the model so a resumed run reuses it


def _scores_tensors(scores: Scores | None) -> dict[str, torch.Tensor]:
    return {} if scores is None else {_SCORES_KEY + name: value for name, value in vars(scores).items()}


def _scores_from(tensors: dict[str, torch.Tensor]) -> Scores | None:
    saved = {k[len(_SCORES_KEY):]: v for k, v in tensors.items() if k.startswith(_SCORES_KEY)}
    return Scores(**saved) if saved else None
