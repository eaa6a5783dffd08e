import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from meca_cli.core.dist import shard_range
from meca_cli.core.partition import (complement, mostly_suspected_classes, rho_schedule, split_by_agreement,
                                     top_fraction)


@given(st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=200), st.floats(0.01, 0.99))
@settings(max_examples=60, deadline=None)
def test_partition_is_disjoint_and_complete(scores, fraction):
    kl = torch.tensor(scores)
    clean = top_fraction(kl, fraction)
    rest = complement(clean, len(kl))
    assert len(set(clean.tolist()) & set(rest.tolist())) == 0
    assert sorted(clean.tolist() + rest.tolist()) == list(range(len(kl)))
    # Every seed-clean score is at least every other score.
    if len(rest):
        assert float(kl[clean].min()) >= float(kl[rest].max())


def test_top_fraction_picks_highest_scores():
    kl = torch.tensor([0.1, 5.0, 0.2, 3.0, 0.0])
    assert top_fraction(kl, 0.4).tolist() == [1, 3]


def test_rho_schedule_is_linear_and_bounded():
    assert rho_schedule(0.05, 0.5, 1) == [0.05]
    sched = rho_schedule(0.1, 0.9, 5)
    assert sched[0] == 0.1 and abs(sched[-1] - 0.9) < 1e-12
    assert all(b > a for a, b in zip(sched, sched[1:]))


def test_split_flags_agreement():
    probs = torch.tensor([[0.9, 0.1, 0.0], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.1, 0.7, 0.2]])
    labels = torch.tensor([0, 2, 2, 0])
    assert split_by_agreement(probs, labels).tolist() == [True, False, True, False]


def test_split_cap_keeps_most_confident_agreeing():
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    labels = torch.tensor([0, 0, 1, 1])  # all four agree
    assert split_by_agreement(probs, labels, max_suspected=0.5).tolist() == [True, False, False, True]


@given(st.integers(0, 500), st.integers(1, 16))
def test_shards_are_disjoint_and_complete(n, parts):
    seen = []
    for part in range(parts):
        lo, hi = shard_range(n, part, parts)
        seen.extend(range(lo, hi))
    assert seen == list(range(n))


def test_split_by_confidence():
    probs = torch.tensor([[0.45, 0.55], [0.2, 0.8], [0.5, 0.5]])
    labels = torch.tensor([0, 1, 0])
    assert split_by_agreement(probs, labels, rule="confidence", min_confidence=0.45).tolist() == [True, True, True]
    assert split_by_agreement(probs, labels, rule="confidence", min_confidence=0.6).tolist() == [False, True, False]


@given(st.integers(2, 60), st.integers(2, 6), st.floats(0.05, 1.0), st.integers(0, 1000))
@settings(max_examples=60, deadline=None)
def test_split_is_a_capped_subset_of_agreement(n, classes, cap, seed):
    gen = torch.Generator().manual_seed(seed)
    probs = torch.rand(n, classes, generator=gen).softmax(1)
    labels = torch.randint(0, classes, (n,), generator=gen)
    suspected = split_by_agreement(probs, labels, max_suspected=cap)
    agreeing = probs.argmax(1) == labels
    assert not (suspected & ~agreeing).any()  # only samples the enhanced model agrees with
    assert int(suspected.sum()) == min(int(agreeing.sum()), int(cap * n))
    assert torch.equal(suspected, split_by_agreement(probs, labels, max_suspected=cap))  # deterministic


def test_mostly_suspected_classes_names_the_classes_the_clean_model_will_not_see():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    suspected = torch.tensor([True, True, True, True, True, False, False, False, False, False])
    assert mostly_suspected_classes(suspected, labels, 4) == {0: 1.0}  # class 3 is empty: not reported
    assert mostly_suspected_classes(suspected, labels, 4, rate=0.25) == {0: 1.0, 1: 0.25}
