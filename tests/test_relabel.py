"""Relabelling, and the suspects of a class flagged almost whole that keep their label."""

import torch
from torch import nn

from meca_cli.core.relabel import DROPPED, held_suspects, mean_knn_distance, own_class_suspects, relabel
from meca_cli.core.train import predict_logits, predict_with_features


def test_mean_knn_distance_holds_a_bounded_block_whatever_the_pool(monkeypatch):
    import meca_cli.core.relabel as relabel_module

    gen = torch.Generator().manual_seed(0)
    queries, pool = torch.rand(37, 4, generator=gen), torch.rand(50, 4, generator=gen)
    whole = mean_knn_distance(queries, pool, k=3)
    monkeypatch.setattr(relabel_module, "_DISTANCE_BLOCK", 120)  # 2 query rows x 50 pool rows at a time
    assert torch.allclose(mean_knn_distance(queries, pool, k=3), whole)
    monkeypatch.setattr(relabel_module, "_DISTANCE_BLOCK", 7)  # fewer entries than a row: still one row
    assert torch.allclose(mean_knn_distance(queries, pool, k=3), whole)


def test_mean_knn_distance_skips_the_query_itself():
    pool = torch.tensor([[0.0], [1.0], [3.0]])
    assert mean_knn_distance(pool, pool, k=1, skip_self=True).tolist() == [1.0, 1.0, 2.0]
    assert mean_knn_distance(torch.tensor([[0.5]]), pool, k=2).tolist() == [0.5]


def test_own_class_suspects_keeps_the_class_and_not_the_poison():
    # Class 0 and 1 clean images sit at x = 0 and x = 10; class 2 was flagged whole: its own
    # images sit together at x = 20, its poisons (really class 0) among the class-0 images.
    feats = torch.tensor([[0.0], [0.1], [0.2], [10.0], [10.1], [10.2], [20.0], [20.1], [20.2], [0.15], [0.05]])
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2])
    suspected = torch.tensor([False] * 6 + [True] * 5)
    keep, doubt = own_class_suspects(feats, suspected, labels, [2], k=2)
    assert keep.nonzero().squeeze(1).tolist() == [6, 7, 8]
    assert not bool(doubt.any())  # lost_class_leave_out 1: no band of doubt



def test_own_class_suspects_margin_keeps_only_the_clearly_nearer():
    # A clean image at x = 0 and four suspects of the flagged class 1. The one at 4.6 is
    # 4.4 from its nearest fellow suspect (9) and 4.6 from the clean image: nearer the
    # suspects, but not by the margin of 0.9. The others are far nearer the suspects.
    feats = torch.tensor([[0.0], [10.0], [10.0], [9.0], [4.6]])
    labels = torch.tensor([0, 1, 1, 1, 1])
    suspected = torch.tensor([False, True, True, True, True])
    shipped, _ = own_class_suspects(feats, suspected, labels, [1], k=1)
    strict, doubt = own_class_suspects(feats, suspected, labels, [1], k=1, margin=0.9)
    assert shipped.nonzero().squeeze(1).tolist() == [1, 2, 3, 4]
    assert strict.nonzero().squeeze(1).tolist() == [1, 2, 3]
    assert not bool(doubt.any())  # relabelled, not left out
    kept, doubt = own_class_suspects(feats, suspected, labels, [1], k=1, leave_out=0.9)
    assert kept.nonzero().squeeze(1).tolist() == [1, 2, 3]
    assert doubt.nonzero().squeeze(1).tolist() == [4]  # nearer the suspects, but not by 0.9: left out


class Tiny(nn.Module):
    """Features = the first two input values; logits = a fixed linear map of them."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(2, 3, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))

    def forward(self, x):
        return self.head(x.flatten(1)[:, :2])


def _images(rows):
    img = torch.zeros(len(rows), 1, 1, 2, dtype=torch.uint8)
    img[:, 0, 0] = torch.tensor(rows, dtype=torch.uint8)
    return img


def test_features_are_the_last_linear_layers_input_beside_the_same_logits():
    images, model, cpu = _images([[255, 0], [0, 51], [102, 51]]), Tiny(), torch.device("cpu")
    logits, feats = predict_with_features(model, images, cpu, indices=torch.tensor([2, 0]))
    assert torch.allclose(feats, torch.tensor([[0.4, 0.2], [1.0, 0.0]]))
    assert torch.equal(logits, predict_logits(model, images, cpu, indices=torch.tensor([2, 0])))


def test_relabel_keeps_the_lost_class_only_when_asked():
    # Clean: class 0 (feature along x) and class 1 (along y). Class 2 is wholly suspected:
    # two of its images point along x+y together (its own), one along x (a class-0 poison).
    images = _images([[200, 0], [210, 0], [0, 200], [0, 210], [150, 150], [160, 150], [205, 1]])
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    suspected = torch.tensor([4, 5, 6])
    plain, kept = relabel(Tiny(), images, labels, suspected, torch.device("cpu"), 3, keep_lost_class=False)
    assert not kept.any() and plain[6] == 0 and plain[4] != 2 and plain[5] != 2
    new, kept = relabel(Tiny(), images, labels, suspected, torch.device("cpu"), 3, keep_lost_class=True,
                        neighbours=1)
    assert kept.nonzero().squeeze(1).tolist() == [4, 5]
    assert new.tolist() == [0, 0, 1, 1, 2, 2, 0]  # the poison still gets the clean model's label
    # With a band of doubt as wide as the rule, its own images are left out instead (DROPPED).
    new, kept = relabel(Tiny(), images, labels, suspected, torch.device("cpu"), 3, neighbours=1, leave_out=1e-6)
    assert not kept.any() and new.tolist() == [0, 0, 1, 1, DROPPED, DROPPED, 0]


def test_an_unsure_change_of_label_leaves_the_suspect_out():
    from meca_cli.core.relabel import confident_prediction

    logits = torch.tensor([[3.0, 0.0], [0.2, 0.0], [0.0, 0.2], [0.0, 3.0]]).log_softmax(1)
    given = torch.tensor([1, 1, 0, 1])
    # 0 changes label confidently; 1 changes it at p 0.55; 2 too; 3 keeps it (whatever its confidence).
    assert confident_prediction(logits, given, 0.0).tolist() == [0, 0, 1, 1]
    assert confident_prediction(logits, given, 0.9).tolist() == [0, DROPPED, DROPPED, 1]
    # Through relabel, at 0.5: the Tiny model calls [60, 50] class 0 at p 0.36 (given 1): left
    # out; it calls [0, 255] class 1 at p 0.58 (given 0): relabelled.
    images, labels = _images([[200, 0], [0, 200], [60, 50], [0, 255]]), torch.tensor([0, 1, 1, 0])
    new, _ = relabel(Tiny(), images, labels, torch.tensor([2, 3]), torch.device("cpu"), 3, min_confidence=0.5)
    assert new.tolist() == [0, 1, DROPPED, 1]


def _probs(labels: torch.Tensor, conf: torch.Tensor, classes: int = 3) -> torch.Tensor:
    """Class probabilities giving each sample its label at `conf`, the rest spread evenly."""
    probs = ((1 - conf) / (classes - 1)).view(-1, 1).repeat(1, classes)
    probs[torch.arange(len(labels)), labels] = conf
    return probs


def test_held_suspects_are_those_keeping_their_label_at_near_certainty():
    labels = torch.tensor([0, 1, 1, 2, 2, 1])
    new = torch.tensor([0, 1, 0, 2, 2, 1])  # sample 2 is relabelled; 1, 3, 4, 5 keep their label
    suspected = torch.tensor([1, 2, 3, 4, 5])
    probs = _probs(labels, torch.tensor([0.9, 0.9995, 1.0, 0.5, 0.9999, 0.2]))  # the enhanced model
    held = held_suspects(new, labels, suspected, probs, 0.999)
    assert held.nonzero().squeeze(1).tolist() == [1, 4]  # 2 changes label; 3, 5 are not held; 0 is no suspect
    assert not held_suspects(new, labels, suspected, probs, 1.01).any()


def test_a_class_the_enhanced_model_collapsed_onto_keeps_its_held_suspects():
    # Classes 1 and 2: ten label-keeping suspects each. The enhanced model holds all of
    # class 1's and three of class 2's, but it also gives class 1 at near-certainty to two of
    # the twenty images labelled otherwise (a collapse onto class 1, not a trigger): class
    # 1's are kept, class 2's three are left out. A class held whole with nothing foreign
    # held (class 2 with all ten held: clean-label poison, say) is left out whole.
    labels = torch.tensor([0] * 10 + [1] * 10 + [2] * 10)
    suspected = torch.arange(10, 30)
    probs = _probs(labels, torch.tensor([0.6] * 10 + [1.0] * 10 + [1.0] * 3 + [0.5] * 7))
    probs[:2] = torch.tensor([0.0, 1.0, 0.0])
    held = held_suspects(labels.clone(), labels, suspected, probs, 0.999)
    assert held.nonzero().squeeze(1).tolist() == [20, 21, 22]
    probs[20:] = torch.tensor([0.0, 0.0, 1.0])
    assert held_suspects(labels.clone(), labels, suspected, probs, 0.999).nonzero().squeeze(1).tolist() == list(range(20, 30))


def test_the_fine_tune_trains_every_suspect_and_a_share_of_the_clean_split():
    from meca_cli.core.relabel import finetune_pool
    from meca_cli.core.train import Subsample

    new = torch.tensor([0, 1, 2, DROPPED, 1, 0, 2, 1])
    suspected = torch.tensor([2, 3, 4])
    assert finetune_pool(torch.tensor([0, 1, 2, 1]), suspected[:1], 1.0) is None  # nothing left out: all
    assert finetune_pool(new, suspected, 1.0).tolist() == [0, 1, 2, 4, 5, 6, 7]  # all but the left-out one
    pool = finetune_pool(new, suspected, 0.5)
    assert isinstance(pool, Subsample)
    assert pool.always.tolist() == [2, 4]  # the suspects, not the left-out one
    assert pool.sampled.tolist() == [0, 1, 5, 6, 7]
    assert len(pool) == 2 + 2  # round(0.5 x 5)
    assert set(pool.draw(torch.Generator().manual_seed(0)).tolist()) >= {2, 4}
