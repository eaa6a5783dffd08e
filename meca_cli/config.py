"""Every step's parameters and their defaults, in one torch-free place.

The command-line options take their defaults from here, so a default is written once.
Defaults marked "measured" were chosen on the cifar10-small benchmark (BENCHMARKS.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import ClassVar

from meca_cli.errors import ConfigError


IMAGE_SIZE = 32  # every image is resized to this square side (CIFAR-10's own)
SEED = 0  # of every random draw, unless a command's --seed says otherwise

# Batch sizes of the passes that only read a model (eval mode: no batch statistics, so
# their results do not depend on the batch, only their speed). On the CPU the fastest
# measured on 2 cores (smallcnn, 1 and 2 threads): small enough that the activations stay
# in cache. The score keeps its activations for the input gradient and falls out sooner:
# 64 scores 1.4-1.5x as fast as 256, and 128 predicts 1.1-1.45x as fast as 256. On a GPU,
# large enough to fill the device (not measured: no GPU here).
EVAL_BATCH = {"cpu": {"score": 64, "predict": 128}, "cuda": {"score": 512, "predict": 1024}}


class _Params:
    # The allowed values of each string parameter, checked whichever way the config was
    # built (flags, a config file, an --ablate sweep), so a typo never runs as a default.
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __post_init__(self):
        for name, allowed in self.CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]


@dataclass(frozen=True)
class TrainConfig(_Params):
    epochs: int = 20  # full schedule; the poisoned model in `sanitize` uses a fraction of it
    # Small folders get more epochs, up to this many optimizer steps: measured on 2,000
    # CIFAR-10 images, 20 epochs (320 steps) left the poisoned model without the backdoor.
    min_steps: int = 600
    batch_size: int = 128
    # Each epoch in equal batches of at most batch_size (False: full batches and the rest).
    even_batches: bool = True
    lr: float = 0.05  # peak learning rate (SGD, Nesterov momentum)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup: float = 0.2  # fraction of steps spent ramping the lr up; then linear decay to 0
    schedule: str = "onecycle"  # "onecycle" (warmup then decay) or "constant"
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"schedule": ("onecycle", "constant")}
    label_smoothing: float = 0.0
    augment: bool = True  # random crop (pad 4) + horizontal flip, batched on the device
    seed: int = SEED


@dataclass(frozen=True)
class ScoreConfig(_Params):
    eps: float = 8 / 255  # FGSM step in pixel units
    patch: int = 2  # side of the square perturbation mask, pixels (the paper's "patch size 2")
    masks: int = 1  # random masks averaged per sample (more = lower variance; docs/measurements.md)
    batch_size: int | None = None  # None: by device (EVAL_BATCH); the scores do not depend on it
    seed: int = SEED


@dataclass(frozen=True)
class EnhanceConfig(_Params):
    rounds: int = 6  # T (measured: 8 lost as many attacks as 6, other ones; cifar10-small, two seeds)
    rho_max: float = 0.9  # clean-set fraction unlearned in the last round (measured)
    lam: float = 0.5  # unlearning coefficient lambda (measured: the paper's 0.05 does not unlearn)
    unlearn: str = "ascent"  # "ascent" (the paper: -lambda * CE) or "uniform" (towards the uniform prediction)
    ceiling: float = math.log(10)  # ascent: none on a sample whose loss already exceeds chance level
    lr: float = 0.01  # constant SGD lr of the enhancement epochs
    epochs_per_round: int = 1
    # Re-score before every this-many-th round (rounds 2, 2 + k, ...); the rounds between take
    # their larger clean set from the last scores. Each re-scoring costs about 0.06 training
    # runs. Measured: at 2 the poison gets into the unlearned sets (TaCT recall 99.8 to 32 %).
    rescore_every: int = 1
    # What orders the last round's clean set: "kl" (the highest scores, as in every round) or
    # "confidence" (the given labels the model holds least). The last round unlearns 90 % of
    # the data, so the poison must rank in the other 10 %.
    last_round_by: str = "kl"
    batch_size: int = 128
    seed: int = SEED
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"unlearn": ("ascent", "uniform"), "last_round_by": ("kl", "confidence")}


@dataclass(frozen=True)
class SplitConfig(_Params):
    rule: str = "agreement"  # "agreement" (argmax == label) or "confidence" (p(label) >= min_confidence)
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"rule": ("agreement", "confidence")}
    min_confidence: float = 0.5
    # At most this fraction is suspected; past it the enhancement did not separate, and the
    # suspects kept are those the enhanced model is most confident in (a warning says so).
    max_suspected: float = 0.5


@dataclass(frozen=True)
class RelabelConfig(_Params):
    finetune_epochs: int = 4  # short schedule over the whole relabelled set
    finetune_lr: float = 0.01  # low lr: adjust the clean model, do not retrain it
    # Each fine-tune epoch trains every suspect it keeps and a fresh random share of the clean
    # split (1: all of it). The clean model already knows the clean split; the suspects are new.
    # Measured: 0.25 halves step 7, and costs 0.56 points of final ACC and 0.5 of ASR (BENCHMARKS.md).
    finetune_clean_share: float = 1.0
    # A suspect the clean model would give another label gets it only at this confidence or
    # above; under it the suspect is left out of the fine-tune (0: every suspect is relabelled).
    # On a clean folder every change of label is a mistake of the clean model. Measured: 0.9
    # gains 0.43 points of final ACC and costs 1.25 of ASR, the poison relabelled right being
    # left out too (BENCHMARKS.md, Ablation).
    relabel_confidence: float = 0.0
    # Suspects of a class the split flagged (almost) whole keep their label when the clean
    # model's features put them nearer the other suspects than the clean split (core.relabel).
    # Measured: without it the final model loses that class (BENCHMARKS.md, target ACC).
    keep_lost_class: bool = True
    lost_class_share: float = 0.75  # a class with at least this share suspected counts as lost (measured)
    neighbours: int = 10  # k of that nearest-neighbour comparison
    # A suspect keeps its label when its distance to the suspects is under this times its
    # distance to the clean split (1: whichever is nearer; core.relabel.own_class_suspects).
    lost_class_margin: float = 1.0
    # Between lost_class_leave_out x that bound and the bound itself, a suspect is in doubt and
    # is left out of the final training, neither kept nor relabelled (1: none is).
    lost_class_leave_out: float = 1.0
    # A suspect keeping its label while the enhanced model still gives that label this much
    # is left out of the final training (clean-label poison; core.relabel.held_suspects).
    drop_held: bool = True
    held_confidence: float = 0.999
    batch_size: int = 128
    seed: int = SEED


@dataclass(frozen=True)
class VerdictConfig(_Params):
    # Read from the step-1 scores (core.verdict). The thresholds were set on 32 cifar10-small
    # runs (seeds 0-1, clean seeds 2-5, four attacks at 1, 10 and 20 %) and then tested on
    # runs they were not set on (README, "Dataset verdict").
    robust_tail: float = 0.01  # the extreme low end of the KL score...
    robust_reference: float = 0.25  # ...compared with this wider low end
    robust_ratio: float = 3.8  # a class this many times likelier at the extreme (odds ratio): poisoned...
    robust_min_z: float = 4.0  # ...when its count there is this many standard deviations above chance
    spread_ratio: float = 0.89  # a class whose errors spread this evenly over the others: poisoned
    min_errors: int = 20  # a class with fewer training errors takes no part in the spread
    # Undetermined when the step-1 model agrees with more than this share of the labels: a
    # model that fits nearly every image leaves one class's easiest images at the robust end
    # (measured: 100 % on the digits and on 1,000 CIFAR-10 images, both false alarms; 67-81 %
    # on every cifar10-small run).
    max_fit: float = 0.9


@dataclass(frozen=True)
class SanitizeConfig(_Params):
    arch: str = "smallcnn"
    train: TrainConfig = TrainConfig()
    poisoned_epochs: float = 1 / 3  # step 1 trains this fraction of train.epochs: the backdoor is learned early
    # ...but at least this many steps (capped at train.min_steps, so --min-steps 0 lifts every floor).
    # Measured: at 200 steps on 5,000 CIFAR-10 images the step-1 model had not learned BadNet's
    # backdoor (ASR 6 %) and MeCa (4 enhancement rounds) flagged 21 % of the poison; 10,000 images x
    # 7 epochs is 553 steps.
    poisoned_min_steps: int = 550
    clean_epochs: float = 1.0  # step 6 (the clean model, from scratch) trains this fraction of train.epochs
    score: ScoreConfig = ScoreConfig()
    rho0: float = 0.05  # seed clean-set fraction
    enhance: EnhanceConfig = EnhanceConfig()
    split: SplitConfig = SplitConfig()
    relabel: RelabelConfig = RelabelConfig()
    verdict: VerdictConfig = VerdictConfig()

    def with_seed(self, seed: int) -> "SanitizeConfig":
        return replace(self, train=replace(self.train, seed=seed), score=replace(self.score, seed=seed),
                       enhance=replace(self.enhance, seed=seed), relabel=replace(self.relabel, seed=seed))
