"""Does a penalty against the collapse help? Enhancement with an extra loss on each batch's
mean prediction: beta x KL(mean softmax || uniform), then the split, against ground truth.

Usage: python benchmarks/analysis/balanced_enhancement.py WORK/<run> BETA OUT

WORK/<run> is a finished `meca bench` run folder (its step-1 model and seed clean set are
reused); OUT receives the experiment's enhance/ and split/ steps. Prints recall, FPR, the
verdict, the suspect rate per class and the enhanced model's two most predicted classes.
Measured (docs/measurements.md): beta 1 on the clean control and BadNet, seed 0.
"""
import csv, json, sys, collections
from pathlib import Path
import torch, torch.nn.functional as F
from meca_cli import steps
from meca_cli.core import train as T
from meca_cli.config import EnhanceConfig, ScoreConfig, SplitConfig
from meca_cli.core.verdict import dataset_verdict

run, beta, out = Path(sys.argv[1]), float(sys.argv[2]), Path(sys.argv[3])
base = T.unlearning_loss
def balanced(logits, per_sample, w, mode, ceiling):
    p = F.softmax(logits, 1).mean(0)
    k = p.numel()
    penalty = (p * (p * k).clamp_min(1e-12).log()).sum()  # KL(mean p || uniform)
    return base(logits, per_sample, w, mode, ceiling) + beta * penalty
if beta > 0:
    T.unlearning_loss = balanced
common = steps.Common(device="cpu")
data = run / "data/train"
out.mkdir(parents=True, exist_ok=True)
steps.enhance(data, run / "run/train-poisoned/model.safetensors", run / "run/partition/clean_seed.idx",
              out / "enhance", common, EnhanceConfig(), ScoreConfig())
T.unlearning_loss = base
steps.split(data, out / "enhance/model.safetensors", out / "split", common, SplitConfig())
gt = {r["index"]: r for r in csv.DictReader(open(data / "ground_truth.csv"))}
rows = list(csv.DictReader(open(out / "split/split.csv")))
pois = [r for r in rows if gt[r["index"]]["role"] == "poison"]
neg = [r for r in rows if gt[r["index"]]["role"] != "poison"]
sus = lambda r: r["verdict"] == "suspected"
labels = torch.tensor([int(r["label"]) for r in rows]); s = torch.tensor([sus(r) for r in rows])
v = dataset_verdict(labels, s, 10)
rates = (torch.bincount(labels[s], minlength=10).float() / torch.bincount(labels, minlength=10).float())
pred = collections.Counter(int(r["enhanced_pred"]) for r in rows).most_common(2)
res = {"run": run.name, "beta": beta, "recall": sum(map(sus, pois)) / max(1, len(pois)),
       "fpr": sum(map(sus, neg)) / len(neg), "verdict": v["verdict"], "concentration": v["concentration"],
       "rates": [round(float(x), 3) for x in rates], "predtop": pred}
print(json.dumps(res))
