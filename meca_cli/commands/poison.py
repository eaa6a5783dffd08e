from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from meca_cli.errors import cli_errors
from meca_cli.config import IMAGE_SIZE, SEED
from meca_cli.options import CacheDir, Format, FormatOpt, ImageSize


@cli_errors
def poison(
    src: Annotated[Path, typer.Argument(help="Clean image folder to copy.", show_default=False)],
    out: Annotated[Path, typer.Argument(help="New folder to write (must not exist or be empty).", show_default=False)],
    attack: Annotated[str, typer.Option(help="badnet, blend, sig, wanet, physicalba, tact, adaptive_blend, adaptive_patch.")] = "badnet",
    rate: Annotated[float, typer.Option(min=0, max=1, help="Poisoned fraction of the training set.")] = 0.05,
    target: Annotated[int, typer.Option(min=0, help="Target class index.")] = 1,
    cover_rate: Annotated[float | None, typer.Option(min=0, max=1, help="Cover (trigger, label kept) fraction [default: the attack's].")] = None,
    source: Annotated[int, typer.Option(min=0, help="TaCT source class.")] = 0,
    cover_classes: Annotated[str, typer.Option(help="TaCT cover classes, comma-separated.")] = "5,7",
    blend_key: Annotated[str, typer.Option(help="Blend / AdaptiveBlend key: cartoon or noise.")] = "cartoon",
    physicalba_trigger: Annotated[str, typer.Option(help="PhysicalBA trigger: logo or square.")] = "logo",
    wanet_k: Annotated[int, typer.Option(min=2, help="WaNet control grid size k.")] = 4,
    wanet_s: Annotated[float, typer.Option(min=0, help="WaNet warp strength s.")] = 0.5,
    per_class: Annotated[int | None, typer.Option(min=1, help="Take a seeded class-balanced subset of this many images per class first.")] = None,
    test: Annotated[bool, typer.Option("--test", help="Write the triggered test folder (ASR population, test trigger) instead.")] = False,
    like: Annotated[Path | None, typer.Option(help="With --test: reuse the attack and trigger of this poisoned training folder.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the selection and the trigger.")] = SEED,
    image_size: ImageSize = IMAGE_SIZE,
    cache_dir: CacheDir = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Write a poisoned copy of an image folder with per-sample ground truth (ground_truth.csv),
    the attack card and its trigger; with --test, the triggered test folder for the ASR."""
    import time

    from meca_cli import poisoning, steps
    from meca_cli.commands.common import report_step
    from meca_cli.core.attacks import AttackConfig
    from meca_cli.errors import ConfigError

    try:
        covers = tuple(int(c) for c in cover_classes.split(",") if c.strip())
    except ValueError:
        raise ConfigError(f"--cover-classes: expected comma-separated class indices, got {cover_classes!r}") from None
    started = time.monotonic()
    dataset = steps.open_data(src, steps.Common(image_size=image_size, cache_dir=cache_dir))
    if like is not None:
        config, state = poisoning.config_from_card(like)
    else:
        config = AttackConfig(name=attack, rate=rate, target=target, seed=seed, cover_rate=cover_rate, source=source,
                              cover_classes=covers, blend_key=blend_key, physicalba_trigger=physicalba_trigger,
                              wanet_k=wanet_k, wanet_s=wanet_s)
        state = None
    if test:
        if state is None:
            from meca_cli.core.attacks import build_trigger_state

            state = build_trigger_state(config, image_size, image_size)
        summary = poisoning.write_triggered(dataset, out, config, state)
    else:
        subset = poisoning.balanced_subset(dataset.labels, per_class, seed) if per_class else None
        summary = poisoning.write_poisoned(dataset, out, config, subset)
    report_step(steps.StepResult("poison", out, False, time.monotonic() - started, summary), fmt)
