"""One swept value of an ablation against the runs at the shipped defaults, run by run.

Usage: python benchmarks/analysis/against_headline.py PARAM=VALUE RESULTS.json [...]

The results files hold the PARAM=VALUE runs of an ablation and, for the same attacks and
seeds, the runs at the shipped defaults (a headline file, or another sweep's `default`
runs). Useful when a sweep was run under a protocol override that leaves the default's
computation unchanged (`--min-steps 0` on cifar10-small, where step 1 takes 553
steps either way), so BENCHMARKS.md cannot pair the two rows itself.
Prints final ACC, final ASR, recall, FPR, AUROC, verdict, step-1 seconds and the verdict's
concentration, old > new, and the mean changes.
"""

import json
import sys


def figures(run: dict) -> tuple:
    detection, final = run["detection"], run["meca_final_model"]
    return (100 * final["accuracy"], 100 * (final.get("asr") or 0), 100 * (detection.get("recall") or 0),
            100 * detection["fpr"], detection.get("auroc") or 0, run["dataset_verdict"]["verdict"],
            run["seconds"]["train-poisoned"], run["dataset_verdict"]["concentration"])


def same_value(recorded, given: str) -> bool:
    try:
        return abs(float(recorded) - float(given)) < 1e-9
    except (TypeError, ValueError):  # a string or bool parameter
        return str(recorded).lower() == given.lower()


def main(spec: str, paths: list[str]) -> None:
    param, _, value = spec.partition("=")
    runs = [r for path in paths for r in json.load(open(path))["runs"]]
    new = {(r["attack"], r["seed"]): r for r in runs if r.get("param") == param and same_value(r["value"], value)}
    ref = {(r["attack"], r["seed"]): r for r in runs if r.get("param") != param and r.get("default", True)}
    print(f"{'run':18} {'final ACC':>12} {'final ASR':>12} {'recall':>12} {'FPR':>12} {'AUROC':>12}  verdict"
          f"          step-1 s  concentration")
    deltas = []
    for key in sorted(new, key=lambda k: (k[1], k[0])):
        if key not in ref:
            continue
        old, now = figures(ref[key]), figures(new[key])
        deltas.append((now[0] - old[0], now[1] - old[1], key[0] != "clean"))
        cells = " ".join(f"{o:5.1f} >{n:5.1f}" for o, n in zip(old[:4], now[:4]))
        print(f"{key[0] + '-s' + str(key[1]):18} {cells} {old[4]:.3f}>{now[4]:.3f}  {old[5]:8} > {now[5]:8}"
              f" {old[6]:4.0f} >{now[6]:4.0f}  {old[7]:6.1f} >{now[7]:6.1f}")
    if deltas:
        poisoned = [d for d in deltas if d[2]]
        print(f"mean change: final ACC {sum(d[0] for d in deltas) / len(deltas):+.2f} points over {len(deltas)} runs, "
              f"higher on {sum(d[0] > 0 for d in deltas)}", end="")
        if poisoned:
            print(f"; final ASR {sum(d[1] for d in poisoned) / len(poisoned):+.2f} over {len(poisoned)} poisoned runs, "
                  f"lower on {sum(d[1] < 0 for d in poisoned)}", end="")
        print()


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
