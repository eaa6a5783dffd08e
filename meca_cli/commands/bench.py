from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from meca_cli.errors import cli_errors
from meca_cli.options import CacheDir, Device

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10-jpeg.tar.gz"


@cli_errors
def bench(
    protocol: Annotated[str, typer.Option(help="cifar10-small (CPU) or cifar10-paper (GPU).")] = "cifar10-small",
    data: Annotated[Path, typer.Option(help="CIFAR-10: the cifar10-jpeg.tar.gz or its unpacked folder.",
                                       envvar="MECA_CIFAR10")] = DEFAULT_DATA,
    attacks: Annotated[str, typer.Option(help="Comma-separated attacks (and 'clean'), or 'all'.")] = "all",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds.")] = "0",
    epochs: Annotated[int | None, typer.Option(min=1, help="Override the protocol's epochs (a reduced protocol).")] = None,
    per_class: Annotated[int | None, typer.Option(min=1, help="Override the protocol's images per class.")] = None,
    min_steps: Annotated[int | None, typer.Option(min=0, help="Override the training recipe's step floor "
                                                              "(a reduced protocol; tiny folders).")] = None,
    rate: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="Override the protocol's poison rate "
                                                                      "(runs stored apart, e.g. cifar10-small[rate=0.01]).")] = None,
    no_defence: Annotated[bool, typer.Option("--baseline/--no-baseline",
                                             help="Also train the no-defence baseline.")] = True,
    rerun_from: Annotated[str | None, typer.Option("--from", help="Re-measure finished runs from this sanitize step on "
                                                                  "with the current defaults, reusing the earlier steps' "
                                                                  "artifacts and the no-defence result.")] = None,
    work: Annotated[Path, typer.Option(help="Work folder for poisoned data and runs (resumable).")] = Path("benchmarks/work"),
    results: Annotated[Path | None, typer.Option(help="Results JSON [default: benchmarks/results/<protocol>.json].")] = None,
    markdown: Annotated[Path | None, typer.Option(help="Only (re)generate this Markdown file from the results JSON files.")] = None,
    perf: Annotated[bool, typer.Option("--perf", help="Measure cost instead of efficacy: sanitize/train ratio, data-path "
                                                      "efficiency, growth with size, peak memory, 1 vs 2 DDP processes "
                                                      "[results: benchmarks/results/perf.json].")] = False,
    verdict: Annotated[bool, typer.Option("--verdict", help="Measure only the dataset verdict, which reads the step-1 "
                                                            "scores: each run's steps 1-2 "
                                                            "[results: benchmarks/results/<protocol>-verdict.json].")] = False,
    floor: Annotated[bool, typer.Option("--floor", help="Measure each attack's trigger on the clean control's "
                                                        "no-defence model, which never saw poison: the ASR no "
                                                        "sanitising removes "
                                                        "[results: benchmarks/results/<protocol>-floor.json].")] = False,
    parts: Annotated[str, typer.Option(help="--perf: which measurements (path, ratio, growth, ddp, and gate: "
                                            "sanitize --until score, the verdict alone).")] = "path,ratio,growth,ddp",
    sizes: Annotated[str, typer.Option(help="--perf growth: images per class of each folder.")] = "250,500,1000,2000",
    repeats: Annotated[int, typer.Option(min=1, help="--perf ratio and gate: sanitize runs, each timed between two plain "
                                                     "trains; the median ratio is reported.")] = 3,
    sanitize_option: Annotated[list[str] | None, typer.Option(help="--perf ratio: time sanitize with this option, "
                                                                  "NAME=VALUE (e.g. rescore-every=2), repeatable; "
                                                                  "recorded apart from the shipped defaults' ratio.")] = None,
    defences: Annotated[str | None, typer.Option(help="Run these peer defences (finetuning, finepruning, clp, abl, "
                                                      "dbr, cutmix, scanft, or 'all') "
                                                      "on the finished runs of --attacks/--seeds "
                                                      "[results: benchmarks/results/<protocol>-defences.json].")] = None,
    ablate: Annotated[list[str] | None, typer.Option(help="Sweep a parameter, the others at the shipped defaults: "
                                                           "PARAM=V1,V2 (e.g. enhance.lam=0.25,0.5,1), repeatable, "
                                                           "or 'default' for the tunables of method.md "
                                                           "[results: benchmarks/results/<protocol[overrides]>-ablation.json].")] = None,
    device: Device = "auto",
    cache_dir: CacheDir = None,
) -> None:
    """Run a benchmark protocol: for each attack and the clean control, poison, train with no
    defence, sanitize, and evaluate. Resumes where it stopped; writes the results JSON.
    With --markdown FILE, write FILE (e.g. BENCHMARKS.md) from the results JSON instead."""
    from meca_cli import steps
    from meca_cli.bench import ALL_RUNS, PROTOCOLS, run_bench
    from meca_cli.errors import ConfigError
    from meca_cli.store.artifacts import atomic_write_text

    if markdown is not None:
        from meca_cli.benchreport import render_all

        atomic_write_text(markdown, render_all(sorted(Path("benchmarks/results").glob("*.json"))
                                               if results is None else [results]))
        return
    if rate is not None and rate <= 0:
        raise ConfigError("--rate must be above 0", hint="the clean control is its own run: --attacks clean")
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}", hint=f"choose one of {', '.join(PROTOCOLS)}")
    if perf:
        from meca_cli.bench import locate_cifar10
        from meca_cli.perf import run_perf, sanitize_flags

        chosen = {p.strip() for p in parts.split(",") if p.strip()}
        known = {"path", "ratio", "growth", "ddp", "gate"}
        if not chosen <= known:
            raise ConfigError(f"--parts: unknown {', '.join(sorted(chosen - known))}",
                              hint="choose from path, ratio, growth, ddp, gate")
        try:
            size_list = tuple(int(k) for k in sizes.split(",") if k.strip())
        except ValueError:
            raise ConfigError(f"--sizes: expected comma-separated integers, got {sizes!r}") from None
        common = steps.Common(device="cpu", cache_dir=cache_dir)
        root = locate_cifar10(data, work / "cifar10-src")
        run_perf(root, work / "perf", results or Path("benchmarks/results/perf.json"), common, size_list,
                 growth_epochs=epochs or 2, ratio_per_class=per_class or PROTOCOLS[protocol].per_class or 1000,
                 ratio_epochs=None, parts=chosen, ratio_repeats=repeats,
                 sanitize_options=sanitize_flags(sanitize_option or []))
        return
    names = list(ALL_RUNS) if attacks == "all" else [a.strip() for a in attacks.split(",") if a.strip()]
    unknown = [a for a in names if a not in ALL_RUNS]
    if unknown:
        raise ConfigError(f"unknown attack(s) {', '.join(unknown)}", hint=f"choose from {', '.join(ALL_RUNS)}")
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds: expected comma-separated integers, got {seeds!r}") from None
    explicit_results = results is not None
    results = results or Path("benchmarks/results") / f"{protocol}.json"
    if defences is not None:
        from meca_cli.bench import locate_cifar10, protocol_label
        from meca_cli.store.artifacts import read_json
        from meca_cli.defences import DEFENCES
        from meca_cli.peers import run_defences

        chosen = list(DEFENCES) if defences == "all" else [d.strip() for d in defences.split(",") if d.strip()]
        if not chosen or set(chosen) - set(DEFENCES):
            raise ConfigError(f"--defences: unknown {', '.join(sorted(set(chosen) - set(DEFENCES))) or 'none given'}",
                              hint=f"choose from {', '.join(DEFENCES)}, or all")
        if not results.is_file():
            raise ConfigError(f"{results}: no benchmark results yet", hint="run the benchmark before its defences")
        root = locate_cifar10(data, work / "cifar10-src")
        run_defences(read_json(results, hint="fix it or run the benchmark again"), results.with_name(f"{results.stem}-defences.json"),
                     protocol_label(PROTOCOLS[protocol], epochs, per_class, min_steps, rate)[0], root, work, names,
                     seed_list, chosen,
                     steps.Common(device=device, cache_dir=cache_dir))
        return
    if verdict:
        from meca_cli.bench import protocol_label, run_bench_verdict

        label = protocol_label(PROTOCOLS[protocol], rate=rate)[0]
        run_bench_verdict(PROTOCOLS[protocol], data, work,
                          results if explicit_results else Path("benchmarks/results") / f"{label}-verdict.json",
                          names, seed_list, steps.Common(device=device, cache_dir=cache_dir), rate=rate)
        return
    if floor:
        from meca_cli.bench import protocol_label, run_bench_floor

        label = protocol_label(PROTOCOLS[protocol], epochs, per_class, min_steps, rate)[0]
        run_bench_floor(PROTOCOLS[protocol], data, work,
                        results if explicit_results else Path("benchmarks/results") / f"{label}-floor.json",
                        names, seed_list, steps.Common(device=device, cache_dir=cache_dir),
                        epochs=epochs, per_class=per_class, min_steps=min_steps, rate=rate)
        return
    if ablate:
        from meca_cli.ablation import parse_sweep
        from meca_cli.bench import protocol_label, run_bench_ablation

        sweeps: dict[str, tuple] = {}
        for spec in ablate:
            sweeps.update(parse_sweep(spec))
        # One table per protocol variant: a reduced protocol's sweep never lands in the full one's file.
        label = protocol_label(PROTOCOLS[protocol], epochs, per_class, min_steps, rate)[0]
        ablation_results = results if explicit_results else Path("benchmarks/results") / f"{label}-ablation.json"
        run_bench_ablation(PROTOCOLS[protocol], data, work, ablation_results, names, seed_list,
                           steps.Common(device=device, cache_dir=cache_dir), sweeps,
                           epochs=epochs, per_class=per_class, min_steps=min_steps, rate=rate)
        return
    run_bench(PROTOCOLS[protocol], data, work, results, names, seed_list, steps.Common(device=device, cache_dir=cache_dir),
              epochs=epochs, per_class=per_class, no_defence=no_defence, min_steps=min_steps, rerun_from=rerun_from,
              rate=rate)
