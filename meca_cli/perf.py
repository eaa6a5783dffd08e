"""`meca bench --perf`: what MeCa costs next to the one training run a user does anyway.

Every figure comes from one invocation on this machine, written to the results JSON:

- ratio: `meca sanitize` wall time over a plain `meca train` of the same architecture and
  epochs on the same folder, at the shipped defaults, with the time of each step; timed
  train, sanitize, train, ... (each sanitize over the mean of the trains either side of it,
  so a host whose speed drifts during the run shifts both sides of a ratio alike), the
  median over the repeats;
- data path: samples/s of training and scoring inside the pipeline (uint8 cache, batched
  augmentation, progress) over the same model's raw throughput on ready float tensors;
- growth: sanitize and train wall time and peak memory at several folder sizes;
- DDP: `meca train` under torchrun with 1 and 2 CPU processes;
- gate: `meca sanitize --until score` (the dataset verdict alone, for a CI gate) over a
  plain `meca train`, timed as the ratio is.

Commands run as child processes, so each one's peak memory (VmHWM, sampled) is its own,
with the folder's decode cache made beforehand so neither side of a ratio pays for it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from meca_cli import poisoning, steps
from meca_cli.console import info
from meca_cli.store.artifacts import read_json
from meca_cli.core.attacks import AttackConfig

PERF_VERSION = "1"


def _peak_rss_mib(pid: int) -> float | None:
    """VmHWM of a running process. (ru_maxrss of a child would include this process's own
    resident size at fork, which the kernel carries across exec.)"""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def _run_child(args: list[str], env: dict | None = None, parse_json: bool = True) -> dict:
    """Run a command; its wall seconds, peak resident memory (MiB, sampled every 0.1 s) and JSON stdout."""
    started = time.monotonic()
    child_env = {k: v for k, v in os.environ.items() if k != "MECA_CONFIG"}  # measure the shipped defaults
    with subprocess.Popen(args, stdout=subprocess.PIPE if parse_json else subprocess.DEVNULL,
                          stderr=subprocess.PIPE, env={**child_env, **(env or {})}) as proc:
        peak = 0.0
        output = []
        errors: list[bytes] = []  # drain the pipes beside the sampling so the child never blocks on a full one

        readers = [threading.Thread(target=lambda: errors.append(proc.stderr.read()), daemon=True)]
        if parse_json:
            readers.append(threading.Thread(target=lambda: output.append(proc.stdout.read()), daemon=True))
        for reader in readers:
            reader.start()
        while proc.poll() is None:
            peak = max(peak, _peak_rss_mib(proc.pid) or 0.0)
            time.sleep(0.1)
        for reader in readers:
            reader.join()
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        from meca_cli.errors import MecaError

        command = next((a for a in args if a in ("train", "sanitize")), args[0])
        tail = (errors[0] if errors else b"").decode(errors="replace").strip().splitlines()[-3:]
        raise MecaError(f"perf: 'meca {command}' failed with exit code {proc.returncode}: {' / '.join(tail)}")
    stdout = output[0] if output else b""
    return {"seconds": round(seconds, 2), "peak_rss_mib": round(peak, 1),
            "result": json.loads(stdout) if stdout.strip() else None}


def _meca(*args: str) -> list[str]:
    return [sys.executable, "-m", "meca_cli", *args]


def make_folder(cifar_train: Path, out: Path, per_class: int, common: steps.Common, seed: int = 0) -> Path:
    """A BadNet-poisoned (5 %) class-balanced CIFAR-10 subset, written once, its decode
    cache made (so the first command timed on it does not pay for decoding)."""
    if not (out / "ground_truth.csv").is_file():
        source = steps.open_data(cifar_train, common)
        subset = poisoning.balanced_subset(source.labels, per_class, seed)
        poisoning.write_poisoned(source, out, AttackConfig(name="badnet", rate=0.05, target=1, seed=seed), subset)
    steps.open_data(out, common)
    return out


def sanitize_vs_train(data: Path, run: Path, epochs: int | None, extra: list[str], repeats: int = 1,
                      sanitize_extra: list[str] = ()) -> dict:
    """Wall time of sanitize and of a plain train on the same folder and settings (both
    find the folder's decode cache ready; `sanitize_extra` goes to sanitize alone). With
    repeats > 1: train, then `repeats` times sanitize and train again; each sanitize is over
    the mean of its neighbouring trains, and the figures are those of the median ratio
    (`pairs` keeps them all)."""
    from statistics import median

    opts = [*(["--epochs", str(epochs)] if epochs else []), "--device", "cpu", "--format", "json", *extra]

    def train_once() -> dict:
        return _run_child(_meca("train", str(data), "-o", str(run / "plain-train"), "--force", *opts))

    trains = [train_once()]
    pairs = []
    for _ in range(repeats):
        sanitize = _run_child(_meca("sanitize", str(data), "--out", str(run / "sanitize"), "--force", *opts,
                                    *sanitize_extra))
        if repeats > 1:
            trains.append(train_once())
        train_seconds = sum(t["seconds"] for t in trains[-2:]) / len(trains[-2:])
        ran = sanitize["result"]["steps"]
        # The clean model trains on what the split leaves, so the ratio moves with its size.
        kept = [s["summary"]["clean"] for s in ran if s["step"] == "split" and "clean" in s.get("summary", {})]
        pairs.append({"train_seconds": round(train_seconds, 2), "sanitize_seconds": sanitize["seconds"],
                      "ratio": round(sanitize["seconds"] / train_seconds, 3),
                      "step_seconds": {s["step"]: s["seconds"] for s in ran},
                      **({"clean_split": kept[0]} if kept else {}),
                      "sanitize_peak_rss_mib": sanitize["peak_rss_mib"]})
    middle = sorted(pairs, key=lambda p: p["ratio"])[(len(pairs) - 1) // 2]
    out = {**middle, "train_peak_rss_mib": max(t["peak_rss_mib"] for t in trains)}
    if repeats > 1:
        out |= {"ratio": round(median(p["ratio"] for p in pairs), 3), "repeats": repeats, "pairs": pairs,
                "train_runs_seconds": [t["seconds"] for t in trains]}
    return out


def data_path_efficiency(data: Path, common: steps.Common, arch: str = "smallcnn", batches: int = 40,
                         batch_size: int = 128) -> dict:
    """Pipeline throughput over raw throughput, for training and for scoring."""
    from meca_cli.config import ScoreConfig, TrainConfig
    from meca_cli.core.device import eval_batch_size, prepare_model, to_float
    from meca_cli.core.fold import inference_model
    from meca_cli.core.models import build_model
    from meca_cli.core.scoring import kl_scores, patch_positions, score_batch
    from meca_cli.core.train import fit, make_optimizer

    dataset = steps.open_data(data, common)
    device = torch.device("cpu")
    batch_size = min(batch_size, len(dataset))
    n = min(len(dataset), batches * batch_size) // batch_size * batch_size  # whole batches, as both loops run
    cfg = TrainConfig(epochs=1, min_steps=0, batch_size=batch_size)
    torch.manual_seed(0)
    # Raw and pipeline run the same model as the steps do: in their layout, and for the
    # score BatchNorm-folded (core.fold).
    model = prepare_model(build_model(arch, len(dataset.classes), dataset.image_size), device)

    x = to_float(dataset.images[:batch_size], device)  # ready tensors: no decode, index or augmentation
    y = dataset.labels[:batch_size]
    opt = make_optimizer(model, cfg)
    model.train()

    def raw_train_step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):  # warm-up: allocator and kernels
        raw_train_step()
    started = time.perf_counter()
    for _ in range(n // batch_size):
        raw_train_step()
    raw_train = n / (time.perf_counter() - started)
    started = time.perf_counter()
    fit(model, dataset.images[:n], dataset.labels[:n], cfg, device)
    pipe_train = n / (time.perf_counter() - started)

    score_cfg = ScoreConfig()
    scorer = inference_model(model, device)
    score_batch_size = eval_batch_size(device, "score", score_cfg.batch_size)  # as kl_scores batches
    xs, ys = to_float(dataset.images[:score_batch_size], device), dataset.labels[:score_batch_size]
    corners = patch_positions(len(xs), dataset.image_size, score_cfg)
    score_batch(scorer, xs, ys, corners, score_cfg)  # warm-up
    repeats = max(1, n // len(xs))
    started = time.perf_counter()
    for _ in range(repeats):
        score_batch(scorer, xs, ys, corners, score_cfg)
    raw_score = repeats * len(xs) / (time.perf_counter() - started)
    started = time.perf_counter()
    kl_scores(model, dataset.images[:n], dataset.labels[:n], score_cfg, device)
    pipe_score = n / (time.perf_counter() - started)
    return {"samples": n, "threads": torch.get_num_threads(),
            "train": {"raw_samples_per_s": round(raw_train, 1), "pipeline_samples_per_s": round(pipe_train, 1),
                      "efficiency": round(pipe_train / raw_train, 3)},
            "score": {"raw_samples_per_s": round(raw_score, 1), "pipeline_samples_per_s": round(pipe_score, 1),
                      "efficiency": round(pipe_score / raw_score, 3)}}


def ddp_timing(data: Path, out: Path, epochs: int, extra: list[str]) -> dict:
    """`meca train` under torchrun with 1 and with 2 CPU processes (gloo)."""
    from meca_cli.core.dist import launcher

    timings = {}
    for procs in (1, 2):
        args = [*launcher(), "--standalone", f"--nproc_per_node={procs}", "-m", "meca_cli", "train", str(data),
                "-o", str(out / f"ddp-{procs}"), "--force", "--epochs", str(epochs), "--device", "cpu", *extra]
        child = _run_child(args, env={"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // procs))},
                           parse_json=False)
        timings[f"{procs}"] = child["seconds"]
    return {"epochs": epochs, "seconds_by_processes": timings,
            "speedup": round(timings["1"] / timings["2"], 3)}


def cache_mib(samples: int, image_size: int = 32) -> float:
    return round(samples * 3 * image_size * image_size / 2**20, 1)


def count_images(folder: Path) -> int:
    from meca_cli.core.data import scan_folder

    return len(scan_folder(folder))


def sanitize_flags(options: list[str]) -> list[str]:
    """NAME=VALUE pairs (`--sanitize-option`) as sanitize's own flags, in the order given."""
    from meca_cli.errors import ConfigError

    flags = []
    for option in options:
        name, sep, value = option.partition("=")
        if not sep or not name.strip("-") or not value:
            raise ConfigError(f"--sanitize-option: expected NAME=VALUE, got {option!r}", hint="e.g. rescore-every=2")
        flags += [f"--{name.strip('-')}", value]
    return flags


def code_version() -> str | None:
    """The git commit of meca's source tree (with "+changes" when it differs from it), so a
    timing names the code it timed; None outside a git checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        changed = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "meca_cli"],
                                 capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+changes" if changed else "")


def run_perf(cifar_root: Path, work: Path, results: Path, common: steps.Common, sizes: tuple[int, ...],
             growth_epochs: int, ratio_per_class: int, ratio_epochs: int | None, parts: set[str],
             ratio_repeats: int = 3, sanitize_options: list[str] = ()) -> dict:
    """Run the selected parts not yet in `results` (resumable); write results after each.
    With `sanitize_options` (sanitize flags), the ratio is measured with them and kept under
    `ratio_with`, apart from the shipped defaults' `ratio`."""
    table = read_json(results, {"meca_perf_version": PERF_VERSION}, "fix or remove it")
    env_note = {"cpu_count": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    table.setdefault("machine", env_note)

    def save():
        results.parent.mkdir(parents=True, exist_ok=True)
        from meca_cli.store.artifacts import write_json

        write_json(results, table)

    if not sizes:
        from meca_cli.errors import ConfigError

        raise ConfigError("--sizes: give at least one size (images per class)")
    if common.cache_dir is not None:
        os.environ["MECA_CACHE_DIR"] = str(common.cache_dir)  # the children read the caches made here
    os.environ.setdefault("MECA_MIN_STEPS", "0")  # growth and DDP runs do exactly the epochs they state
    folder = lambda k: make_folder(cifar_root / "train", work / f"data-{k}", k, common)  # noqa: E731
    if "path" in parts and "data_path" not in table:
        info("perf: data-path efficiency")
        table["data_path"] = data_path_efficiency(folder(ratio_per_class), common)
        save()
    variant = " ".join(sanitize_options)
    ratios = table.setdefault("ratio_with", {}) if variant else table
    # Ratio and gate, each sanitize run against plain trains at the shipped defaults: the key
    # they are kept under, the sanitize flags, and what the log says.
    timed = [("ratio", variant or "ratio", ratios, list(sanitize_options),
              f"sanitize vs train at {variant or 'the shipped defaults'}"),
             ("gate", "gate", table, ["--until", "score"], "the verdict alone (sanitize --until score) vs train")]
    for part, key, into, flags, what in timed:
        if part not in parts or key in into:
            continue
        info(f"perf: {what} ({ratio_per_class * 10} images)")
        env_min = os.environ.pop("MECA_MIN_STEPS")  # the shipped defaults include the step floor
        try:
            data = folder(ratio_per_class)
            into[key] = {"samples": count_images(data), "code": code_version(),
                         **sanitize_vs_train(data, work / part, ratio_epochs, [], ratio_repeats, flags)}
        finally:
            os.environ["MECA_MIN_STEPS"] = env_min
        save()
    if "growth" in parts:
        growth = table.setdefault("growth", {"epochs": growth_epochs, "rows": []})
        for k in sizes:
            if any(r.get("per_class") == k for r in growth["rows"]):
                continue
            data = folder(k)
            n = count_images(data)
            info(f"perf: growth at {n} images ({growth_epochs} epochs)")
            row = sanitize_vs_train(data, work / f"growth-{k}", growth_epochs, [])
            growth["rows"].append({"per_class": k, "samples": n, "cache_mib": cache_mib(n), **row})
            save()
    if "ddp" in parts and "ddp" not in table:
        info("perf: 1 vs 2 torchrun processes")
        data = folder(sizes[0])
        table["ddp"] = {"samples": count_images(data), **ddp_timing(data, work / "ddp", 2, [])}
        save()
    return table
