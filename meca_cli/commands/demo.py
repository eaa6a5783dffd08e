from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from meca_cli.config import SEED, TrainConfig
from meca_cli.errors import cli_errors
from meca_cli.options import Arch, MinSteps, CacheDir, Device, Epochs, Format, FormatOpt, Seed


@cli_errors
def demo(
    data: Annotated[Path | None, typer.Option(help="A clean folder with train/ and test/ image folders inside "
                                                   "[default: scikit-learn's bundled handwritten digits].")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Work folder.")] = Path("meca-demo"),
    attack: Annotated[str, typer.Option(help="Attack to plant (see 'meca poison'), or 'clean' for none.")] = "badnet",
    rate: Annotated[float, typer.Option(min=0, max=1, help="Poisoned fraction.")] = 0.05,
    target: Annotated[int, typer.Option(min=0, help="Target class index.")] = 1,
    per_class: Annotated[int | None, typer.Option(min=1, help="Train on a class-balanced subset of this many images per class.")] = None,
    baseline: Annotated[bool, typer.Option(help="Also train with no defence, to show the attack works.")] = False,
    arch: Arch = "smallcnn",
    epochs: Epochs = TrainConfig.epochs,
    min_steps: MinSteps = TrainConfig.min_steps,
    seed: Seed = SEED,
    device: Device = "auto",
    cache_dir: CacheDir = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """The main job on a real data set, end to end: plant a backdoor (a corner patch on 5% of
    the images, one target class, ground truth recorded), run 'meca sanitize', and print
    detection recall/precision and the models' clean accuracy and attack success rate."""
    from meca_cli import steps
    from meca_cli.console import emit_json, emit_table, info
    from meca_cli.errors import DataError
    from meca_cli.experiment import Experiment, run_experiment
    from meca_cli.report import verdict_summary
    from meca_cli.config import SanitizeConfig

    if data is None:
        train_src, test_src = _digits(out / "source", seed)
    else:
        train_src, test_src = data / "train", data / "test"
        if not train_src.is_dir() or not test_src.is_dir():
            raise DataError(f"{data}: expected train/ and test/ image folders inside",
                            hint="lay it out as DATA/train/<class>/<image> and DATA/test/<class>/<image>")
    cfg = SanitizeConfig(arch=arch, train=TrainConfig(epochs=epochs, min_steps=min_steps)).with_seed(seed)
    common = steps.Common(device=device, cache_dir=cache_dir)
    exp = Experiment(train_src, test_src, out, attack=attack, rate=rate, target=target, per_class=per_class,
                     seed=seed, no_defence=baseline)
    result = run_experiment(exp, cfg, common)
    if fmt is Format.json:
        emit_json(result)
        return
    det, nd = result["detection"], result.get("no_defence", {})
    clean_m, final_m = result["meca_clean_model"], result["meca_final_model"]
    pct = lambda v: "-" if v is None else f"{100 * v:.2f}%"  # noqa: E731
    emit_table([
        ("training samples", result["train_samples"]),
        ("poisoned samples", det["poison"]),
        ("detection recall", pct(det["recall"])),
        ("detection precision", pct(det["precision"])),
        ("false-positive rate", pct(det["fpr"])),
        ("AUROC of the KL score", f"{det['auroc']:.3f}"),
        ("dataset verdict", verdict_summary(result["dataset_verdict"])),
        ("no defence: accuracy / ASR", f"{pct(nd.get('accuracy'))} / {pct(nd.get('asr'))}" if nd
         else "not run (add --baseline)"),
        ("MeCa clean model: accuracy / ASR", f"{pct(clean_m.get('accuracy'))} / {pct(clean_m.get('asr'))}"),
        ("MeCa final model: accuracy / ASR", f"{pct(final_m.get('accuracy'))} / {pct(final_m.get('asr'))}"),
        ("sanitize seconds", result["seconds"]["sanitize_total"]),
    ], title=f"meca demo: {attack} at {rate:.0%} -> {out}")
    info(f"details: {out / 'result.json'}; per-sample verdicts: {out / 'run' / 'verdicts.csv'}")


def _digits(root: Path, seed: int) -> tuple[Path, Path]:
    """Write scikit-learn's digits as clean train/ and test/ folders once."""
    import shutil

    from meca_cli.datasets import digits_tensors, split_train_test, write_folder

    train, test = root / "train", root / "test"
    if not (train.is_dir() and test.is_dir()):
        images, labels, classes = digits_tensors()
        tr, te = split_train_test(labels, 0.25, seed)
        for folder, idx in ((train, tr), (test, te)):
            partial = folder.with_name(folder.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            write_folder(partial, images[idx], labels[idx], classes)
            partial.rename(folder)
    return train, test
