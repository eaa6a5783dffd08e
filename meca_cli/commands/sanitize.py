from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from meca_cli.config import (IMAGE_SIZE, SEED, EnhanceConfig, RelabelConfig, SanitizeConfig, ScoreConfig, SplitConfig, TrainConfig,
                             VerdictConfig)
from meca_cli.errors import ConfigError, ExitCode, cli_errors
from meca_cli.options import (LastRoundBy, LastRoundOrders, DropHeld, HeldConfidence, KeepLostClass, LostClassMargin, FinetuneCleanShare, RelabelConfidence, RescoreEvery, LostClassShare, MinConfidence, SplitRule, SplitRules, Unlearn, Unlearning, MinSteps, SkipBad, Arch, BatchSize, CacheDir, DataArg, Device, Epochs, Eps, Force, Format, FormatOpt,
                              ImageSize, Lr, Masks, Patch, Seed)

STEP_HELP = "train-poisoned, score, partition, enhance, split, train-clean or relabel"


@cli_errors
def sanitize(
    data: DataArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory (one sub-folder per step).")] = Path("meca-run"),
    arch: Arch = SanitizeConfig.arch,
    epochs: Epochs = TrainConfig.epochs,
    poisoned_epochs: Annotated[float, typer.Option(min=0, max=1, help="Step 1 trains this fraction of --epochs.")] = SanitizeConfig.poisoned_epochs,
    poisoned_min_steps: Annotated[int, typer.Option(min=0, help="Step 1 trains at least this many steps (at most --min-steps).")] = SanitizeConfig.poisoned_min_steps,
    clean_epochs: Annotated[float, typer.Option(min=0, max=1, help="Step 6 (the clean model) trains this fraction of --epochs.")] = SanitizeConfig.clean_epochs,
    min_steps: MinSteps = TrainConfig.min_steps,
    batch_size: BatchSize = TrainConfig.batch_size,
    lr: Lr = TrainConfig.lr,
    eps: Eps = ScoreConfig.eps,
    patch: Patch = ScoreConfig.patch,
    masks: Masks = ScoreConfig.masks,
    rho0: Annotated[float, typer.Option(min=0, max=1, help="Seed clean-set fraction (partition).")] = SanitizeConfig.rho0,
    rounds: Annotated[int, typer.Option(min=1, help="Enhancement rounds.")] = EnhanceConfig.rounds,
    rescore_every: RescoreEvery = EnhanceConfig.rescore_every,
    last_round_by: LastRoundBy = LastRoundOrders(EnhanceConfig.last_round_by),
    rho_max: Annotated[float, typer.Option(min=0, max=1, help="Clean-set fraction of the last round.")] = EnhanceConfig.rho_max,
    lam: Annotated[float, typer.Option(min=0, help="Unlearning coefficient lambda.")] = EnhanceConfig.lam,
    ceiling: Annotated[float, typer.Option(min=0, help="No ascent on a sample whose loss exceeds this.")] = EnhanceConfig.ceiling,
    unlearn: Unlearn = Unlearning(EnhanceConfig.unlearn),
    split_rule: SplitRule = SplitRules(SplitConfig.rule),
    min_confidence: MinConfidence = SplitConfig.min_confidence,
    enhance_lr: Annotated[float, typer.Option(min=0, help="Learning rate of the enhancement epochs.")] = EnhanceConfig.lr,
    finetune_epochs: Annotated[int, typer.Option(min=0, help="Fine-tuning epochs after relabelling.")] = RelabelConfig.finetune_epochs,
    finetune_lr: Annotated[float, typer.Option(min=0, help="Fine-tuning learning rate.")] = RelabelConfig.finetune_lr,
    keep_lost_class: KeepLostClass = RelabelConfig.keep_lost_class,
    lost_class_share: LostClassShare = RelabelConfig.lost_class_share,
    lost_class_margin: LostClassMargin = RelabelConfig.lost_class_margin,
    finetune_clean_share: FinetuneCleanShare = RelabelConfig.finetune_clean_share,
    relabel_confidence: RelabelConfidence = RelabelConfig.relabel_confidence,
    drop_held: DropHeld = RelabelConfig.drop_held,
    held_confidence: HeldConfidence = RelabelConfig.held_confidence,
    robust_ratio: Annotated[float, typer.Option(min=0, help="Dataset verdict: a class's odds among the 1 % lowest scores over its odds among the 25 % lowest that means poisoned...")] = VerdictConfig.robust_ratio,
    robust_min_z: Annotated[float, typer.Option(help="Dataset verdict: ...and how many binomial standard deviations that class's count in the 1 % must lie above chance.")] = VerdictConfig.robust_min_z,
    spread_ratio: Annotated[float, typer.Option(min=0, max=1, help="Dataset verdict: how evenly a class's training errors spread over the other classes (effective number over their number) that means poisoned.")] = VerdictConfig.spread_ratio,
    max_fit: Annotated[float, typer.Option(min=0, max=1, help="Dataset verdict: 'undetermined' when the step-1 model agrees with more than this share of the labels (a small folder it fits whole).")] = VerdictConfig.max_fit,
    max_suspected: Annotated[float, typer.Option(min=0, max=1, help="Split: at most this fraction is suspected.")] = SplitConfig.max_suspected,
    start: Annotated[str | None, typer.Option("--from", help=f"Recompute from this step on ({STEP_HELP}).")] = None,
    until: Annotated[str | None, typer.Option(help="Stop after this step.")] = None,
    export: Annotated[Path | None, typer.Option(help="Write the sanitized data set to this new folder.")] = None,
    export_mode: Annotated[str, typer.Option(help="relabeled (all samples, suspects relabelled) or clean (clean split only).")] = "relabeled",
    fail_over: Annotated[float | None, typer.Option(min=0, max=1, help="CI gate: exit 1 when the data set is judged poisoned with an estimated poison fraction above this. Stopped before the split (--until score: a fifth of the cost), no fraction is estimated and any poisoned verdict trips it.")] = None,
    seed: Seed = SEED,
    device: Device = "auto",
    image_size: ImageSize = IMAGE_SIZE,
    cache_dir: CacheDir = None,
    force: Force = False,
    skip_bad: SkipBad = False,
    fmt: FormatOpt = Format.table,
) -> None:
    """Find the poisoned samples in DATA and train a clean model on it: every MeCa step, chained
    and resumable. Writes OUT/<step>/..., OUT/verdicts.csv, OUT/report.json and OUT/report.html.
    A short summary goes to stderr; --format json prints the full result on stdout, --format
    csv the per-image verdicts."""
    from meca_cli import steps
    from meca_cli.console import emit_json, emit_table, summary_table
    from meca_cli.pipeline import STEPS, sanitize as run_pipeline
    from meca_cli.report import verdict_summary

    cfg = SanitizeConfig(
        arch=arch, train=TrainConfig(epochs=epochs, min_steps=min_steps, batch_size=batch_size, lr=lr), poisoned_epochs=poisoned_epochs,
        poisoned_min_steps=poisoned_min_steps, clean_epochs=clean_epochs,
        score=ScoreConfig(eps=eps, patch=patch, masks=masks), rho0=rho0,
        enhance=EnhanceConfig(rounds=rounds, rho_max=rho_max, lam=lam, ceiling=ceiling, lr=enhance_lr, unlearn=unlearn.value,
                              rescore_every=rescore_every, last_round_by=last_round_by.value,
                              batch_size=batch_size),
        split=SplitConfig(rule=split_rule.value, min_confidence=min_confidence, max_suspected=max_suspected),
        relabel=RelabelConfig(finetune_epochs=finetune_epochs, finetune_lr=finetune_lr, batch_size=batch_size,
                              keep_lost_class=keep_lost_class, lost_class_share=lost_class_share, lost_class_margin=lost_class_margin,
                              finetune_clean_share=finetune_clean_share, relabel_confidence=relabel_confidence,
                              drop_held=drop_held, held_confidence=held_confidence),
        verdict=VerdictConfig(robust_ratio=robust_ratio, robust_min_z=robust_min_z, spread_ratio=spread_ratio,
                              max_fit=max_fit),
    ).with_seed(seed)
    common = steps.Common(device, image_size, cache_dir, force, skip_bad)
    if fail_over is not None and until in STEPS[:STEPS.index("score")]:
        raise ConfigError(f"--fail-over needs the dataset verdict, which the score step gives; --until {until} stops "
                          "before it", hint="use --until score (the verdict alone) or a later step")
    result = run_pipeline(data, out, common, cfg, start=start, until=until, export=export, export_mode=export_mode)
    report, v = result.report, result.verdict
    if report:
        summary_table([("dataset verdict", verdict_summary(v)),
                       ("suspected", f"{report['suspected']} of {report['samples']}"),
                       ("estimated poison fraction", f"{v['estimated_poison_fraction']:.2%}"),
                       ("minutes", f"{sum(s or 0 for s in report['seconds'].values()) / 60:.1f}"),
                       ("final model", report["final_model"]),
                       ("report", str(out / "report.html"))], title=f"meca sanitize: {data}")
    elif v is not None:
        summary_table([("dataset verdict", verdict_summary(v)),
                       ("estimated poison fraction", "not yet (the split, step 5, estimates it)"
                        if "estimated_poison_fraction" not in v else f"{v['estimated_poison_fraction']:.2%}"),
                       ("stopped after", until)], title=f"meca sanitize: {data}")
    if fmt is Format.json:
        emit_json({"run": str(out), "steps": [s.to_dict() for s in result.steps], "report": report,
                   "dataset_verdict": v})
    elif fmt is Format.csv and report:
        sys.stdout.write((out / "verdicts.csv").read_text(encoding="utf-8"))
    elif not report:
        emit_table([(s.name, "up to date" if s.skipped else f"{s.seconds:.1f}s") for s in result.steps],
                   title=f"sanitize: stopped after {until}")
    if fail_over is not None and v is not None:
        gate(v, fail_over)


def gate(v: dict, fail_over: float) -> None:
    """Exit with GATE_FAILED when the verdict `v` is poisoned over `fail_over`; a verdict
    without a poison estimate (a run stopped before the split) trips on poisoned alone."""
    from meca_cli.console import info, warn

    if v["verdict"] == "undetermined":
        warn(f"gate: not judged: the step-1 model fits {v['fit']:.1%} of the labels (over {v['max_fit']:.0%}), "
             "where the verdict is not measured to work (README, \"Dataset verdict\")")
    if v["verdict"] != "poisoned":
        return
    estimate = v.get("estimated_poison_fraction")
    if estimate is None:
        info(f"gate: data set judged poisoned (class {v.get('suspected_class_name')}); the poison fraction is "
             "estimated from the split, which this run stopped before")
        raise typer.Exit(int(ExitCode.GATE_FAILED))
    if estimate > fail_over:
        info(f"gate: data set judged poisoned (estimated {estimate:.1%} > {fail_over:.1%})")
        raise typer.Exit(int(ExitCode.GATE_FAILED))
