from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from meca_cli.config import IMAGE_SIZE, SEED, RelabelConfig
from meca_cli.errors import cli_errors
from meca_cli.options import DropHeld, HeldConfidence, KeepLostClass, LostClassMargin, FinetuneCleanShare, RelabelConfidence, LostClassShare, SkipBad, BatchSize, CacheDir, DataArg, Device, Force, Format, FormatOpt, ImageSize, ModelOpt, Out, Seed


@cli_errors
def relabel(
    data: DataArg,
    model: ModelOpt,
    suspected: Annotated[Path, typer.Option(help="suspected.idx from 'meca split'.", show_default=False)],
    enhanced_model: Annotated[Path | None, typer.Option(help="The enhanced model from 'meca enhance', for --drop-held "
                                                            "(without it, no suspect is left out).")] = None,
    out: Out = Path("meca-run/relabel"),
    finetune_epochs: Annotated[int, typer.Option(min=0, help="Fine-tuning epochs on the relabelled set (0: none).")] = RelabelConfig.finetune_epochs,
    finetune_lr: Annotated[float, typer.Option(min=0, help="Fine-tuning learning rate.")] = RelabelConfig.finetune_lr,
    batch_size: BatchSize = RelabelConfig.batch_size,
    keep_lost_class: KeepLostClass = RelabelConfig.keep_lost_class,
    lost_class_share: LostClassShare = RelabelConfig.lost_class_share,
    lost_class_margin: LostClassMargin = RelabelConfig.lost_class_margin,
    finetune_clean_share: FinetuneCleanShare = RelabelConfig.finetune_clean_share,
    relabel_confidence: RelabelConfidence = RelabelConfig.relabel_confidence,
    drop_held: DropHeld = RelabelConfig.drop_held,
    held_confidence: HeldConfidence = RelabelConfig.held_confidence,
    seed: Seed = SEED,
    device: Device = "auto",
    image_size: ImageSize = IMAGE_SIZE,
    cache_dir: CacheDir = None,
    force: Force = False,
    skip_bad: SkipBad = False,
    fmt: FormatOpt = Format.table,
) -> None:
    """Give each suspected sample the clean model's predicted label, then fine-tune that model
    on the whole relabelled set. Writes OUT/relabeled.csv and OUT/model.safetensors (final).
    With --enhanced-model, suspects it still holds at near-certainty under their given label
    are left out of that training (new_label -1)."""
    from meca_cli import steps
    from meca_cli.commands.common import report_step

    cfg = RelabelConfig(finetune_epochs=finetune_epochs, finetune_lr=finetune_lr, batch_size=batch_size,
                        keep_lost_class=keep_lost_class, lost_class_share=lost_class_share, lost_class_margin=lost_class_margin,
                        finetune_clean_share=finetune_clean_share, relabel_confidence=relabel_confidence,
                        drop_held=drop_held, held_confidence=held_confidence, seed=seed)
    result = steps.relabel(data, model, suspected, out, steps.Common(device, image_size, cache_dir, force, skip_bad), cfg,
                           enhanced_model)
    report_step(result, fmt, csv_file=out / "relabeled.csv",
                next_hint=f"meca evaluate {out / 'model.safetensors'} TEST_DATA")
