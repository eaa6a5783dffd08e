"""Option types shared across commands, so a flag means the same everywhere."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from meca_cli.config import EVAL_BATCH, EnhanceConfig, SplitConfig


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


def _choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    return Enum(name, {v: v for v in values}, type=str)  # type: ignore[return-value]


# From the configs' own lists, so a flag and a config file accept the same values.
Unlearning = _choices("Unlearning", EnhanceConfig.CHOICES["unlearn"])
LastRoundOrders = _choices("LastRoundOrders", EnhanceConfig.CHOICES["last_round_by"])
SplitRules = _choices("SplitRules", SplitConfig.CHOICES["rule"])


DataArg = Annotated[Path, typer.Argument(help="Image folder laid out as DATA/<class>/<image>.", show_default=False)]
Out = Annotated[Path, typer.Option("--out", "-o", help="Output directory of this step.")]
ModelOpt = Annotated[Path, typer.Option("--model", "-m", help="Checkpoint (.safetensors) written by a meca step.",
                                        show_default=False)]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N. auto picks CUDA when present.",
                                     envvar="MECA_DEVICE")]
ImageSize = Annotated[int, typer.Option(min=8, max=1024, help="Images are resized to this square size.")]
CacheDir = Annotated[Path | None, typer.Option(help="Decode cache folder [default: $MECA_CACHE_DIR or ~/.cache/meca].",
                                               envvar="MECA_CACHE_DIR", show_default=False)]
Force = Annotated[bool, typer.Option("--force", help="Recompute even when the step is up to date.")]
Seed = Annotated[int, typer.Option(help="Seed of every random draw.")]
BatchSize = Annotated[int, typer.Option(min=1, help="Samples per batch.")]
EvalBatchSize = Annotated[int | None, typer.Option("--batch-size", min=1, show_default=False,
                                                   help=f"Samples per batch [default: by device, {EVAL_BATCH['cpu']['score']} on the CPU, "
                                                        f"{EVAL_BATCH['cuda']['score']} on a GPU]; the scores do not depend on it.")]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Result format on stdout.")]

# Training recipe.
Arch = Annotated[str, typer.Option(help="smallcnn (fast, CPU), resnet18, resnet34 or mobilenetv2.")]
Epochs = Annotated[int, typer.Option(min=1, help="Training epochs (more on small folders: see --min-steps).")]
MinSteps = Annotated[int, typer.Option(min=0, help="Train at least this many optimizer steps, adding epochs on small folders.",
                                       envvar="MECA_MIN_STEPS")]
Lr = Annotated[float, typer.Option(min=0, help="Peak learning rate (SGD, Nesterov momentum).")]
WeightDecay = Annotated[float, typer.Option(min=0, help="Weight decay.")]

Unlearn = Annotated[Unlearning, typer.Option(help="Enhancement unlearning: ascent (the paper's -lambda*CE) or uniform (towards the uniform prediction).")]
SplitRule = Annotated[SplitRules, typer.Option(help="Split rule: agreement (argmax == label) or confidence (p(label) >= --min-confidence).")]
MinConfidence = Annotated[float, typer.Option(min=0, max=1, help="Split rule 'confidence': the threshold.")]

# The score.
Eps = Annotated[float, typer.Option(min=0, help="FGSM step of the score, in pixel units [0,1].")]
Patch = Annotated[int, typer.Option(min=1, help="Side of the random square the perturbation is confined to.")]
Masks = Annotated[int, typer.Option(min=1, help="Random patches averaged per sample.")]
SkipBad = Annotated[bool, typer.Option("--skip-bad", help="Leave undecodable or unsafe images out (listed in the summary) instead of failing.")]
KeepLostClass = Annotated[bool, typer.Option(help="Suspects of a class flagged almost whole keep their label when the clean "
                                                  "model puts them nearer the other suspects than the clean split.")]
DropHeld = Annotated[bool, typer.Option(help="Leave out of the final training the suspects that keep their label while "
                                             "the enhanced model still gives it --held-confidence (clean-label poison).")]
HeldConfidence = Annotated[float, typer.Option(min=0, max=1, help="Enhanced-model probability of the given label at "
                                                                  "which --drop-held leaves a suspect out.")]
LostClassShare = Annotated[float, typer.Option(min=0, max=1, help="Share of a class suspected at which --keep-lost-class "
                                                                  "treats it as lost.")]
LostClassMargin = Annotated[float, typer.Option(min=0, help="A lost class's suspect keeps its label when its distance to the other "
                                                            "suspects is under this times its distance to the clean split. Under 1 "
                                                            "keeps less poison and fewer of the class's own images (BENCHMARKS.md, Ablation).")]
RelabelConfidence = Annotated[float, typer.Option(min=0, max=1, help="A suspect gets the clean model's other label only at "
                                                                     "this confidence or above; under it, it is left out of the "
                                                                     "final training (0: every suspect is relabelled). 0.9 gained 0.43 "
                                                                     "points of accuracy and cost 1.25 of ASR (BENCHMARKS.md, Ablation).")]
LastRoundBy = Annotated[LastRoundOrders, typer.Option(help="What picks the last enhancement round's clean set: kl (the "
                                                             "highest scores, as every round) or confidence (the given "
                                                             "labels the model holds least). confidence lowered the final ASR "
                                                             "on 6 of 8 attacks and lost WaNet's poison (seed 0; "
                                                             "BENCHMARKS.md, Ablation).")]
RescoreEvery = Annotated[int, typer.Option(min=1, help="Re-score the data before every this-many-th enhancement round "
                                                       "(1: each round); the rounds between reuse the last scores. 2 lost "
                                                       "the poison on 3 of 3 attacks (BENCHMARKS.md, Ablation).")]
FinetuneCleanShare = Annotated[float, typer.Option(min=0.01, max=1, help="Each fine-tuning epoch trains every suspect and this "
                                                              "share of the clean split, drawn afresh. Under 1 the fine-tune is shorter; 0.25 "
                                                              "halved step 7 and cost 0.56 points of accuracy (BENCHMARKS.md, Ablation).")]
