"""`meca bench --ablate`: sweep one parameter at a time, the others at the shipped defaults.

Each (attack, seed) keeps one sanitize run folder for the whole sweep, so a variant re-runs
only the steps its parameter reaches (changing the enhancement keeps steps 1-3): the step
manifests decide, as they do for any resumed run. A variant whose configuration equals
one already measured (every sweep includes the default) reuses that measurement.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass, replace
from pathlib import Path

from meca_cli import steps
from meca_cli.config import SanitizeConfig
from meca_cli.console import info
from meca_cli.errors import ConfigError
from meca_cli.store.artifacts import read_json, write_json
from meca_cli.store.manifest import fingerprint

ABLATION_VERSION = "1"
# The tunable defaults of method.md, each around its shipped value.
DEFAULT_SWEEPS = {
    "enhance.lam": (0.25, 0.5, 1.0),
    "enhance.rho_max": (0.7, 0.8, 0.9),
    "enhance.rounds": (4, 6, 8),
    "rho0": (0.02, 0.05, 0.1),
    "poisoned_epochs": (0.2, 1 / 3, 0.5),
    "score.masks": (1, 4),
    "split.rule": ("agreement", "confidence"),
}


def default_value(cfg: SanitizeConfig, path: str):
    node = cfg
    for part in path.split("."):
        if not is_dataclass(node) or part not in {f.name for f in fields(node)}:
            raise ConfigError(f"--ablate: unknown parameter {path!r}",
                              hint=f"e.g. {', '.join(DEFAULT_SWEEPS)}")
        node = getattr(node, part)
    return node


def with_param(cfg, path: str, value):
    """A copy of the (nested, frozen) config with the dotted parameter set."""
    head, _, rest = path.partition(".")
    if not rest:
        return replace(cfg, **{head: value})
    return replace(cfg, **{head: with_param(getattr(cfg, head), rest, value)})


def parse_sweep(spec: str, cfg: SanitizeConfig = SanitizeConfig()) -> dict[str, tuple]:
    """'default' or 'param=v1,v2,...' -> {param: values}, values typed like the default."""
    if spec == "default":
        return dict(DEFAULT_SWEEPS)
    path, sep, values = spec.partition("=")
    if not sep or not values:
        raise ConfigError(f"--ablate: expected PARAM=V1,V2 or 'default', got {spec!r}")
    default = default_value(cfg, path)
    if default is None:  # chosen at run time (score.batch_size, by device): no result depends on it
        raise ConfigError(f"--ablate {path}: chosen by the device, and no result depends on it; nothing to sweep")
    kind = type(default)
    parse = (lambda v: {"true": True, "false": False}[v.strip().lower()]) if kind is bool else kind  # bool("false") is True
    try:
        parsed = tuple(parse(v) for v in values.split(",") if v.strip())
    except (ValueError, KeyError):
        raise ConfigError(f"--ablate {path}: values must be {kind.__name__}, got {values!r}") from None
    for value in parsed:  # the config's own checks (a string parameter's allowed values), before any run
        try:
            with_param(cfg, path, value)
        except ConfigError as exc:
            raise ConfigError(f"--ablate {path}: {exc}") from None
    return {path: parsed}


def run_ablation(protocol_name: str, base: SanitizeConfig, sweeps: dict[str, tuple], make_experiment,
                 results: Path, attacks: list[str], seeds: list[int], common: steps.Common) -> dict:
    """Run every (param, value, attack, seed) not yet in `results`; saved after each."""
    from meca_cli.experiment import recorded_config, run_experiment

    table = read_json(results, {"meca_ablation_version": ABLATION_VERSION, "protocol": protocol_name, "runs": []},
                      "fix or remove it")
    if table.get("protocol") != protocol_name:
        raise ConfigError(f"{results}: holds an ablation of {table.get('protocol')}, not {protocol_name}",
                          hint="pass another --results file")
    for path, values in sweeps.items():
        default_value(base, path)
        for value in values:
            cfg = with_param(base, path, value)
            for seed in seeds:
                for attack in attacks:
                    key = {"param": path, "value": value, "attack": attack, "seed": seed}
                    if any(all(r.get(k) == v for k, v in key.items()) for r in table["runs"]):
                        continue
                    digest = fingerprint(recorded_config(cfg.with_seed(seed)))
                    same = next((r for r in table["runs"] if r["config_fingerprint"] == digest
                                 and r["attack"] == attack and r["seed"] == seed), None)
                    if same is None:
                        info(f"ablation: {path}={value} on {attack} seed {seed}")
                        result = run_experiment(make_experiment(attack, seed), cfg.with_seed(seed), common)
                    else:
                        result = {k: v for k, v in same.items() if k not in ("param", "value", "default")}
                    table["runs"].append({**key, "default": value == default_value(base, path),
                                          "config_fingerprint": digest, **result})
                    results.parent.mkdir(parents=True, exist_ok=True)
                    write_json(results, table)
    return table
