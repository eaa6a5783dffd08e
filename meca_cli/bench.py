"""`meca bench`: the benchmark protocols, a resumable matrix of experiments, and
BENCHMARKS.md generated from the results JSON (no figure is typed in by hand)."""

from __future__ import annotations

import tarfile
from dataclasses import dataclass, replace
from pathlib import Path

from meca_cli import steps
from meca_cli.console import info
from meca_cli.core.attacks import ATTACK_NAMES
from meca_cli.errors import ConfigError, DataError
from meca_cli.experiment import CLEAN, Experiment, recorded_config, refresh_model_metrics, run_experiment
from meca_cli.config import SanitizeConfig
from meca_cli.store.artifacts import read_json, write_json

RESULTS_VERSION = "1"
ALL_RUNS = (*ATTACK_NAMES, CLEAN)

# The paper's CIFAR-10 / ResNet-18 / 5 % figures (averages over its eight attacks), for reference.
PAPER = {
    "no_defence": {"accuracy": 0.8581, "asr": 0.7445},
    "meca_clean_model": {"accuracy": 0.8429, "asr": 0.0033},
    "meca_final_model": {"accuracy": 0.8665, "asr": 0.0003},
    "clean_no_defence_accuracy": 0.8786,
    "clean_meca_accuracy": 0.8604,
}


# The paper's Table II, CIFAR-10 averages over BadNet, Blend, SIG, WaNet and PhysicalBA (ACC, ASR).
PAPER_DEFENCES = {
    "no_defence": (0.8712, 0.8836), "finetuning": (0.8394, 0.9261), "finepruning": (0.7901, 0.7870),
    "cutmix": (0.8057, 0.7848), "clp": (0.3257, 0.3081), "dbr": (0.4006, 0.4101), "scanft": (0.7022, 0.1365),
    "abl": (0.8220, 0.2872), "meca": (0.8514, 0.0053),
}


@dataclass(frozen=True)
class Protocol:
    name: str
    per_class: int | None  # class-balanced training subset
    rate: float
    target: int
    arch: str
    epochs: int
    note: str  # "{rate}" stands for the poison rate
    min_steps: int | None = None  # the training recipe's step floor; None keeps TrainConfig's

    def describe(self) -> str:
        return self.note.format(rate=f"{100 * self.rate:g} %")


PROTOCOLS = {
    "cifar10-small": Protocol("cifar10-small", 1000, 0.05, 1, "smallcnn", 20,
                              "10,000 CIFAR-10 training images (1,000 per class), full 10,000-image test set, "
                              "smallcnn, 20 epochs, {rate} poison, target 1 (automobile), CPU"),
    "cifar10-paper": Protocol("cifar10-paper", None, 0.05, 1, "resnet18", 100,
                              "all 50,000 CIFAR-10 training images, ResNet-18, 100 epochs, {rate} poison, target 1 "
                              "(GPU)"),
}


def locate_cifar10(source: Path, unpack_to: Path) -> Path:
    """The CIFAR-10 folder (with train/ and test/) from a folder or the shared .tar.gz."""
    source = Path(source)
    if source.is_dir():
        root = source / "cifar10" if (source / "cifar10").is_dir() else source
    elif source.is_file() and source.name.endswith((".tar.gz", ".tgz")):
        root = unpack_to / "cifar10"
        if not (root / "test").is_dir():
            info(f"bench: unpacking {source} -> {unpack_to}")
            unpack_to.mkdir(parents=True, exist_ok=True)
            with tarfile.open(source) as tar:
                tar.extractall(unpack_to, filter="data")  # "data" refuses links and paths out of the target
    else:
        raise DataError(f"{source}: CIFAR-10 not found", hint="pass --data with the cifar10-jpeg.tar.gz or its folder")
    if not (root / "train").is_dir() or not (root / "test").is_dir():
        raise DataError(f"{root}: expected train/ and test/ folders inside")
    return root


def protocol_label(protocol: Protocol, epochs: int | None = None, per_class: int | None = None,
                   min_steps: int | None = None, rate: float | None = None) -> tuple[str, Protocol]:
    """The name runs are stored under (and their work folder), and the effective protocol:
    the protocol's own name, or with the overrides of a reduced protocol or another poison
    rate in brackets."""
    recipe = replace(protocol, epochs=epochs or protocol.epochs,
                     per_class=per_class if per_class is not None else protocol.per_class,
                     min_steps=min_steps if min_steps is not None else protocol.min_steps)
    proto = replace(recipe, rate=rate if rate is not None else protocol.rate)
    overrides = []
    if recipe != protocol:
        overrides += [f"epochs={proto.epochs}", f"per_class={proto.per_class}"]
        overrides += [f"min_steps={proto.min_steps}"] if proto.min_steps is not None else []
    if proto.rate != protocol.rate:
        overrides.append(f"rate={proto.rate:g}")
    return (f"{protocol.name}[{','.join(overrides)}]" if overrides else protocol.name), proto


def protocol_config(proto: Protocol, base: SanitizeConfig) -> SanitizeConfig:
    """The sanitize configuration with the protocol's architecture and training recipe."""
    floor = {"min_steps": proto.min_steps} if proto.min_steps is not None else {}
    return replace(base, arch=proto.arch, train=replace(base.train, epochs=proto.epochs, **floor))


def run_bench_ablation(protocol: Protocol, data: Path, work: Path, results: Path, attacks: list[str],
                       seeds: list[int], common: steps.Common, sweeps: dict[str, tuple],
                       epochs: int | None = None, per_class: int | None = None,
                       min_steps: int | None = None, rate: float | None = None) -> dict:
    """The protocol's runs (no baseline) with one parameter varied at a time."""
    from meca_cli.ablation import run_ablation

    root = locate_cifar10(data, work / "cifar10-src")
    name, proto = protocol_label(protocol, epochs, per_class, min_steps, rate)

    def make_experiment(attack: str, seed: int) -> Experiment:
        return Experiment(root / "train", root / "test", work / f"{name}-ablation" / f"{attack}-s{seed}",
                          attack=attack, rate=proto.rate, target=proto.target, per_class=proto.per_class,
                          seed=seed, no_defence=False)

    return run_ablation(name, protocol_config(proto, SanitizeConfig()), sweeps, make_experiment, results, attacks,
                        seeds, common)


def run_bench(protocol: Protocol, data: Path, work: Path, results: Path, attacks: list[str], seeds: list[int],
              common: steps.Common, epochs: int | None = None, per_class: int | None = None,
              label: str | None = None, cfg: SanitizeConfig | None = None, no_defence: bool = True,
              min_steps: int | None = None, rerun_from: str | None = None, rate: float | None = None) -> dict:
    """Run every (attack, seed) not yet in `results`; write results after each run. With
    `rerun_from`, finished runs whose configuration differs from the current one are run
    again from that sanitize step on (see `run_experiment`)."""
    root = locate_cifar10(data, work / "cifar10-src")
    name, proto = protocol_label(protocol, epochs, per_class, min_steps, rate)
    name = label or name
    cfg = protocol_config(proto, cfg or SanitizeConfig())
    table = read_json(results, {"meca_bench_version": RESULTS_VERSION, "runs": []}, "fix or remove it; the runs are kept under --work")
    for seed in seeds:
        for attack in attacks:
            key = {"protocol": name, "attack": attack, "seed": seed}
            exp = Experiment(root / "train", root / "test", work / name / f"{attack}-s{seed}", attack=attack,
                             rate=proto.rate, target=proto.target, per_class=proto.per_class, seed=seed,
                             no_defence=no_defence)
            done = next((r for r in table["runs"] if all(r.get(k) == v for k, v in key.items())), None)
            if done is not None and rerun_from is not None and done.get("config") != recorded_config(cfg.with_seed(seed)):
                info(f"bench: {name} {attack} seed {seed}: measuring again from {rerun_from}")
                result = run_experiment(exp, cfg.with_seed(seed), common, start=rerun_from, previous=done)
                table["runs"][table["runs"].index(done)] = {**key, "protocol_note": proto.describe(), **result}
                write_json(results, table)
                continue
            if done is not None:
                info(f"bench: {name} {attack} seed {seed}: done already")
                if refresh_model_metrics(done, exp, common):
                    write_json(results, table)
                continue
            info(f"bench: {name} {attack} seed {seed}")
            result = run_experiment(exp, cfg.with_seed(seed), common)
            table["runs"].append({**key, "protocol_note": proto.describe(), **result})
            results.parent.mkdir(parents=True, exist_ok=True)
            write_json(results, table)
    return table


VERDICT_VERSION = "1"


def run_bench_verdict(protocol: Protocol, data: Path, work: Path, results: Path, attacks: list[str],
                      seeds: list[int], common: steps.Common, rate: float | None = None) -> dict:
    """The dataset verdict alone on each run: it reads only the step-1 model's scores, so
    sanitize runs up to its score step (in the same work folders as `run_bench`, which
    resumes from them). A run is measured again when the verdict's settings changed."""
    from meca_cli.experiment import prepare_data
    from meca_cli.pipeline import sanitize

    root = locate_cifar10(data, work / "cifar10-src")
    name, proto = protocol_label(protocol, rate=rate)
    cfg = protocol_config(proto, SanitizeConfig())
    table = read_json(results, {"meca_verdict_version": VERDICT_VERSION, "runs": []}, "fix or remove it")
    for seed in seeds:
        for attack in attacks:
            key = {"protocol": name, "attack": attack, "seed": seed}
            done = next((r for r in table["runs"] if all(r.get(k) == v for k, v in key.items())), None)
            config = recorded_config(cfg.with_seed(seed))
            if done is not None and done.get("config") == config:
                info(f"bench: {name} {attack} seed {seed}: verdict measured already")
                continue
            info(f"bench: {name} {attack} seed {seed}: verdict")
            exp = Experiment(root / "train", root / "test", work / name / f"{attack}-s{seed}", attack=attack,
                             rate=proto.rate, target=proto.target, per_class=proto.per_class, seed=seed)
            train_dir, _ = prepare_data(exp, common)
            verdict = sanitize(train_dir, exp.work / "run", common, cfg.with_seed(seed), until="score").verdict
            run = {**key, "rate": 0.0 if attack == CLEAN else proto.rate, "verdict": verdict, "config": config}
            if done is not None:
                table["runs"].remove(done)
            table["runs"].append(run)
            results.parent.mkdir(parents=True, exist_ok=True)
            write_json(results, table)
    return table


FLOOR_VERSION = "1"


def run_bench_floor(protocol: Protocol, data: Path, work: Path, results: Path, attacks: list[str],
                    seeds: list[int], common: steps.Common, epochs: int | None = None,
                    per_class: int | None = None, min_steps: int | None = None, rate: float | None = None) -> dict:
    """Each attack's trigger on a model that never saw poison: the clean control's no-defence
    model (plain training on the same seed's clean images) evaluated on the attack's
    triggered test set. The ASR it shows is a floor no sanitising of the training data
    removes. Uses and fills the same work folders as `run_bench`; a pair is measured again
    when the training settings changed."""
    from meca_cli.experiment import evaluate_checkpoint, prepare_data

    root = locate_cifar10(data, work / "cifar10-src")
    name, proto = protocol_label(protocol, epochs, per_class, min_steps, rate)
    # The clean control holds no poison, so every rate shares the protocol's own.
    control_name, _ = protocol_label(protocol, epochs, per_class, min_steps)
    cfg = protocol_config(proto, SanitizeConfig())
    table = read_json(results, {"meca_floor_version": FLOOR_VERSION, "runs": []}, "fix or remove it")
    if "meca_floor_version" not in table:
        raise ConfigError(f"{results}: not a trigger-floor results file", hint="pass another --results, or none")

    def experiment(attack: str, seed: int) -> Experiment:
        folder = work / (control_name if attack == CLEAN else name) / f"{attack}-s{seed}"
        return Experiment(root / "train", root / "test", folder, attack=attack, rate=proto.rate, target=proto.target,
                          per_class=proto.per_class, seed=seed)

    for seed in seeds:
        train = {"arch": cfg.arch, **cfg.with_seed(seed).train.to_dict()}
        todo = [a for a in attacks if a != CLEAN and not any(
            r["protocol"] == name and r["attack"] == a and r["seed"] == seed and r.get("train") == train
            for r in table["runs"])]
        if not todo:
            info(f"bench: {name} seed {seed}: trigger floors measured already")
            continue
        control = experiment(CLEAN, seed)
        clean_dir, _ = prepare_data(control, common)
        steps.train(clean_dir, control.work / "no-defence", common, cfg.with_seed(seed).train, cfg.arch,
                    name="no-defence")
        for attack in todo:
            info(f"bench: {name} {attack} seed {seed}: trigger floor")
            exp = experiment(attack, seed)
            _, trig_dir = prepare_data(exp, common)
            metrics = evaluate_checkpoint(control.work / "no-defence" / "model.safetensors", exp, trig_dir, common)
            table["runs"] = [r for r in table["runs"]
                             if (r["protocol"], r["attack"], r["seed"]) != (name, attack, seed)]
            table["runs"].append({"protocol": name, "attack": attack, "seed": seed, "floor": metrics, "train": train})
            results.parent.mkdir(parents=True, exist_ok=True)
            write_json(results, table)
    return table
