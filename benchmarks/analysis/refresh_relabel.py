"""Step 7's fine-tune with the suspects relabelled again, after epoch K, by the model being
fine-tuned (one learning-rate schedule throughout).

Usage: python benchmarks/analysis/refresh_relabel.py WORK/<run> K [all|lost]

WORK/<run> is a finished `meca bench` run folder; nothing in it is written. K 0 repeats the
recorded fine-tune (it must reproduce the run's final model). "lost" relabels again only
the suspects of a class the split flagged almost whole. Prints the final model's ACC, ASR
and target ACC beside the recorded ones, and how many suspects end with a wrong label.
Measured (docs/measurements.md): K 2 on BadNet, Blend and the clean control (seeds 0, 5).
"""
import csv, json, os, sys, torch
from pathlib import Path
from meca_cli import steps
from meca_cli.config import TrainConfig
from meca_cli.core.relabel import DROPPED, finetune_pool
from meca_cli.core.train import fit, predict_logits
from meca_cli.core.evaluation import model_metrics
from meca_cli.core.partition import mostly_suspected_classes

run, K = Path(sys.argv[1]), int(sys.argv[2]); scope = sys.argv[3] if len(sys.argv) > 3 else "all"
cpu = torch.device("cpu"); common = steps.Common(device="cpu")
ds = steps.open_data(run / "data/train", common)
man = json.load(open(run / "run/relabel/manifest.json"))["params"]
new = steps.read_label_table(run / "run/relabel/relabeled.csv", len(ds), len(ds.classes))
sus = torch.tensor([int(x) for x in open(run / "run/split/suspected.idx").read().split()])
net, meta = steps.load_checkpoint(run / "run/train-clean/model.safetensors", ds, cpu)
pool = finetune_pool(new, sus, man.get("finetune_clean_share", 1.0))  # absent from manifests before it existed
labels = new.clamp_min(0).clone()
mask = torch.zeros(len(ds), dtype=torch.bool); mask[sus] = True
lost = list(mostly_suspected_classes(mask, ds.labels, len(ds.classes), man["lost_class_share"]))
target = sus[new[sus] != DROPPED]
if scope == "lost":
    target = target[torch.isin(ds.labels[target], torch.tensor(lost or [-1]))]
changes = {}
def refresh(epoch, _m):
    if epoch + 1 == K:
        p = predict_logits(net, ds.images, cpu, indices=target).argmax(1)
        changes["n"] = int((p != labels[target]).sum())
        labels[target] = p
ft = TrainConfig(epochs=man["finetune_epochs"], min_steps=0, batch_size=man["batch_size"], lr=man["finetune_lr"],
                 seed=man["seed"] + 17)
net = fit(net, ds.images, labels, ft, cpu, indices=pool, on_epoch=refresh)
test = steps.open_data(Path(os.environ["MECA_CIFAR10"]) / "test", common)
trig_dir = run / "data/test-triggered"
trig = steps.open_data(trig_dir, common, min_classes=1) if trig_dir.is_dir() else None
m = model_metrics(net, meta, test, trig, 1, cpu)  # target 1: the cifar10-small protocol's
rec = json.load(open(run / "result.json"))["meca_final_model"]
gt = list(csv.DictReader(open(run / "data/train/ground_truth.csv")))
true = torch.tensor([int(g["original_label"]) for g in gt])
wrong = int((labels[target] != true[target]).sum())
res = {"run": run.name, "K": K, "scope": scope, "lost": lost, "changed_at_refresh": changes.get("n"),
       "wrong_labels_after": wrong, "acc": m["accuracy"], "asr": m.get("asr"), "target_acc": m["target_accuracy"],
       "recorded_acc": rec["accuracy"], "recorded_asr": rec.get("asr")}
print(json.dumps(res), flush=True)
