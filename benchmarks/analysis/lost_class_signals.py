"""Which signal tells a lost class's own images from the poison among its suspects?

Usage: python benchmarks/analysis/lost_class_signals.py WORK/<run> [...]

For each run folder whose split flagged (almost) a whole class (the relabel step's lost
class): among that class's suspects, the AUROC of several per-sample signals as detectors
of the class's own (non-poison) images, and what the shipped rule (nearer the other
suspects than the clean split) keeps. Signals, from the step-6 clean model (trained
without the suspects) unless named:
  novelty   mean distance to the k nearest clean images minus to the k nearest suspects
  -to_sus   minus the distance to the k nearest fellow suspects (a tight cluster is a trigger)
  to_clean  distance to the k nearest clean images
  -conf     minus the clean model's top softmax probability (it knows a poison's true class)
  -loss1    minus the poisoned model's (step 1) loss on the given label
  Then what a stricter rule, keeping a suspect only where its distance to the suspects is
under MARGIN x its distance to the clean split, would keep (MARGIN 1 is the shipped rule).
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from meca_cli import steps
from meca_cli.core.evaluation import read_ground_truth
from meca_cli.core.metrics import auroc
from meca_cli.core.partition import mostly_suspected_classes
from meca_cli.core.relabel import mean_knn_distance
from meca_cli.core.train import predict_logits, predict_with_features
from meca_cli.store.artifacts import read_index_list

K = 10
MARGINS = (1.0, 0.95, 0.9, 0.85)


def analyse(run: Path) -> None:
    cpu = torch.device("cpu")
    data = steps.open_data(run / "data" / "train", steps.Common("cpu", 32, None, False, False))
    roles = read_ground_truth(run / "data" / "train" / "ground_truth.csv")
    suspected = torch.zeros(len(data), dtype=torch.bool)
    suspected[read_index_list(run / "run" / "split" / "suspected.idx")] = True
    lost = list(mostly_suspected_classes(suspected, data.labels, len(data.classes)))
    if not lost:
        print(f"{run.name}: no lost class")
        return
    candidates = suspected & torch.isin(data.labels, torch.tensor(lost, dtype=torch.int64))
    own = torch.tensor([roles.get(int(i)) != "poison" for i in candidates.nonzero().squeeze(1)])
    clean_model, _ = steps.load_checkpoint(run / "run" / "train-clean" / "model.safetensors", data, cpu)
    logits, feats = predict_with_features(clean_model, data.images, cpu)
    feats = F.normalize(feats, dim=1)
    q = feats[candidates]
    to_clean = mean_knn_distance(q, feats[~suspected], K)
    to_sus = mean_knn_distance(q, feats[suspected], K, skip_self=True)
    conf = logits[candidates].softmax(1).max(1).values
    poisoned_model, _ = steps.load_checkpoint(run / "run" / "train-poisoned" / "model.safetensors", data, cpu)
    idx = candidates.nonzero().squeeze(1)
    loss1 = F.cross_entropy(predict_logits(poisoned_model, data.images, cpu, indices=idx), data.labels[idx],
                            reduction="none")
    signals = {"novelty": to_clean - to_sus, "-to_sus": -to_sus, "to_clean": to_clean, "-conf": -conf,
               "-loss1": -loss1}
    n_poison = int((~own).sum())
    line = "  ".join(f"{k} {auroc(v, own):.3f}" for k, v in signals.items()) if 0 < n_poison < len(own) else "n/a"
    kept = {m: to_sus < m * to_clean for m in MARGINS}
    trade = ", ".join(f"{m}: {int((k & own).sum())} own / {int((k & ~own).sum())} poison" for m, k in kept.items())
    print(f"{run.name}: lost {[data.classes[c] for c in lost]}, {len(own)} suspects there "
          f"({n_poison} poison); AUROC(own image): {line}; kept by margin {trade}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    for a in sys.argv[1:]:
        analyse(Path(a))
