"""Enhancement re-scored by the model's confidence instead of the KL score (an experiment).

Usage: python benchmarks/analysis/rescore_by_confidence.py WORK/<run> OUT

Rounds 2 on of the enhancement normally unlearn the samples with the highest KL score.
Here they unlearn those whose given label the current model holds least (low confidence =
surely clean), everything else at the shipped defaults, over the run's saved step-1 model
and seed clean set. Runs the enhance and split steps into OUT and prints the split's recall
and FPR and the poison's share of every round's unlearned set.
"""

import sys
from pathlib import Path

import meca_cli.core.enhance as enhance_module
from meca_cli import steps
from meca_cli.config import SanitizeConfig
from meca_cli.core.scoring import Scores, kl_scores
from meca_cli.store.artifacts import read_index_list
from verdict_stats import rows  # this folder: run as a script


def by_confidence(*args, **kwargs) -> Scores:
    s = kl_scores(*args, **kwargs)
    return Scores(-s.conf, s.pred, s.loss, s.conf)  # the top of -conf: the least-held labels


def main(run: Path, out: Path) -> None:
    enhance_module.kl_scores = by_confidence  # the re-scoring inside core.enhance only
    data = run / "data" / "train"
    cfg = SanitizeConfig().with_seed(int(run.name.rsplit("-s", 1)[-1]))
    common = steps.Common(device="cpu")
    steps.enhance(data, run / "run/train-poisoned/model.safetensors", run / "run/partition/clean_seed.idx",
                  out / "enhance", common, cfg.enhance, cfg.score)
    steps.split(data, out / "enhance/model.safetensors", out / "split", common, cfg.split,
                scores=run / "run/score/scores.csv")
    truth = rows(data / "ground_truth.csv")
    poison, n = {i for i, r in enumerate(truth) if r["role"] == "poison"}, len(truth)
    for t in range(2, cfg.enhance.rounds + 1):
        unlearned = set(read_index_list(out / "enhance" / f"rounds/round{t}_clean.idx"))
        print(f"round {t}: {100 * len(unlearned & poison) / len(poison):.1f} % of the poison unlearned")
    suspected = set(read_index_list(out / "split/suspected.idx"))
    print(f"{run.name}: recall {100 * len(suspected & poison) / len(poison):.1f} %, "
          f"FPR {100 * len(suspected - poison) / (n - len(poison)):.1f} %")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
