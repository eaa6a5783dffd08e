"""Each peer defence's defining step, on tiny inputs."""

import torch
from torch import nn

from meca_cli.core.models import build_model
from meca_cli.defences import clp, finepruning, finetuning
from meca_cli.defences.clp import channel_lipschitz_bounds
from meca_cli.defences.finetuning import RepairConfig, mean_activation
from meca_cli.defences.pruning import conv_bn_pairs


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model("smallcnn", 3, 16)


def test_conv_bn_pairs_cover_every_block_in_order():
    model = _model()
    pairs = conv_bn_pairs(model)
    assert len(pairs) == 6
    assert [conv.out_channels for _, conv, _ in pairs] == [32, 64, 64, 128, 128, 128]
    assert all(bn.num_features == conv.out_channels for _, conv, bn in pairs)
    resnet = build_model("resnet18", 3, 16)
    assert len(conv_bn_pairs(resnet)) == 20  # 17 convolutions + 3 downsample projections


def test_clp_bound_is_the_scaled_spectral_norm_and_prunes_the_outlier():
    model = _model().eval()
    name, conv, bn = conv_bn_pairs(model)[2]
    with torch.no_grad():
        conv.weight[5] *= 40  # one channel far more sensitive to its input than its layer
    bounds = channel_lipschitz_bounds(conv, bn)
    k = conv.weight[7].reshape(conv.weight.shape[1], -1)
    expected = torch.linalg.svdvals(k)[0] * bn.weight[7].abs() / torch.sqrt(bn.running_var[7] + bn.eps)
    assert torch.isclose(bounds[7], expected)
    pruned = clp(model, u=3.0)
    assert pruned.get(name) == 1
    assert bn.weight[5] == 0 and bn.bias[5] == 0 and bn.weight[4] != 0
    x = torch.rand(2, 3, 16, 16)
    out = {}
    bn.register_forward_hook(lambda m, i, o: out.setdefault("o", o))
    model(x)
    assert (out["o"][:, 5] == 0).all()  # the pruned channel's output is gone


def _data(n=60, seed=1):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    images = (torch.rand(n, 3, 16, 16, generator=g) * 60 + labels.view(-1, 1, 1, 1) * 80).to(torch.uint8)
    return images, labels


def test_finetuning_learns_the_clean_set():
    images, labels = _data()
    model = _model()
    cfg = RepairConfig(epochs=15, batch_size=20, lr=0.05)
    model = finetuning(model, images, labels, torch.device("cpu"), cfg)
    from meca_cli.core.train import predict_logits

    assert (predict_logits(model, images, torch.device("cpu")).argmax(1) == labels).float().mean() > 0.9


def test_finepruning_prunes_dormant_channels_and_keeps_them_pruned():
    images, labels = _data()
    model = _model()
    _, _, bn = conv_bn_pairs(model)[-1]
    with torch.no_grad():
        bn.bias[:10] = -50  # ten channels that never fire on these images
    acts = mean_activation(model, bn, images, torch.device("cpu"))
    assert (acts[:10] == 0).all() and (acts > 0).sum() > 64
    order = acts.argsort(stable=True)
    # Pruning channels that never fire costs no accuracy, so even with no drop allowed the
    # first step (the ten most dormant) goes through.
    model, pruned = finepruning(model, images, labels, torch.device("cpu"),
                                RepairConfig(epochs=2, batch_size=20, prune_step=10 / 128, max_drop=0.0))
    assert pruned >= 10 and pruned < 128
    _, _, bn = conv_bn_pairs(model)[-1]
    gone = order[:pruned]
    assert (acts[order[:10]] == 0).all()
    assert (bn.weight[gone] == 0).all() and (bn.bias[gone] == 0).all()  # still zero after fine-tuning
    assert isinstance(model, nn.Module)


def test_reserved_clean_set_is_balanced_and_outside_the_run_subset(tmp_path):
    from meca_cli import poisoning, steps
    from meca_cli.peers import reserved_clean
    from tests.conftest import make_image_folder

    make_image_folder(tmp_path / "train", classes=3, per_class=30)
    common = steps.Common(device="cpu")
    images, labels = reserved_clean(tmp_path / "train", per_class=20, seed=0, common=common, fraction=0.25)
    assert torch.bincount(labels).tolist() == [5, 5, 5]
    source = steps.open_data(tmp_path / "train", common)
    subset = poisoning.balanced_subset(source.labels, 20, 0)
    as_rows = {tuple(img.flatten()[:64].tolist()) for img in source.images[subset]}
    assert not any(tuple(img.flatten()[:64].tolist()) in as_rows for img in images)  # never a training image


def test_finepruning_refuses_a_resnet_instead_of_pruning_nothing():
    import pytest

    from meca_cli.defences.finetuning import last_pruneable_bn
    from meca_cli.errors import ConfigError

    model = _model()
    assert last_pruneable_bn(model) is conv_bn_pairs(model)[-1][2]
    assert last_pruneable_bn(build_model("mobilenetv2", 3, 16)) is not None
    with pytest.raises(ConfigError, match="shortcut"):
        last_pruneable_bn(build_model("resnet18", 3, 16))


def test_loss_flood_holds_the_training_loss_near_its_floor():
    """ABL's local gradient ascent: below gamma a sample's loss is pushed back up, so training
    cannot drive the loss to zero the way plain training does."""
    from meca_cli.config import TrainConfig
    from meca_cli.defences.abl import per_sample_loss
    from meca_cli.core.train import fit

    images, labels = _data()
    cfg = TrainConfig(epochs=30, min_steps=0, batch_size=20, lr=0.05, schedule="constant", augment=False)
    plain = per_sample_loss(fit(_model(), images, labels, cfg, torch.device("cpu")), images, labels,
                            torch.device("cpu")).mean()
    flooded = per_sample_loss(fit(_model(), images, labels, cfg, torch.device("cpu"), loss_flood=0.5), images,
                              labels, torch.device("cpu")).mean()
    assert plain < 0.1, plain
    assert 0.25 < flooded < 1.0, flooded


def _patched_set(n=90, seed=3):
    """Three classes that differ a little under heavy noise; 20 samples carry a white corner
    and are relabelled to class 0."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    images = (torch.rand(n, 3, 16, 16, generator=g) * 200 + labels.view(-1, 1, 1, 1) * 12).to(torch.uint8)
    poison = torch.tensor([i for i in range(n) if labels[i] != 0][::3])
    images[poison, :, -6:, -6:] = 255
    labels[poison] = 0
    return images, labels, poison


def test_abl_isolates_the_fast_learned_poisons_and_unlearns_them():
    """The planted patch is learned first, so ABL's lowest-loss samples are poisons. Half the
    poisons stay in the training set, enough to plant the backdoor again (with no unlearning
    the patch still flips every image); unlearning the isolated half removes it."""
    from meca_cli.config import TrainConfig
    from meca_cli.core.train import predict_logits
    from meca_cli.defences.abl import ABLConfig, abl

    images, labels, poison = _patched_set()
    train = TrainConfig(epochs=12, min_steps=0, batch_size=15, lr=0.01, augment=False)
    cfg = ABLConfig(isolation_epochs=3, isolation_fraction=10 / 90, gamma=0.5, unlearn_epochs=5, unlearn_lr=0.01)
    model, isolated, losses = abl(_model(), images, labels, train, torch.device("cpu"), cfg)
    assert len(isolated) == 10
    assert len(set(isolated.tolist()) & set(poison.tolist())) >= 9, (isolated, losses[poison])
    triggered = (torch.rand(30, 3, 16, 16, generator=torch.Generator().manual_seed(4)) * 200 + 12).to(torch.uint8)
    triggered[:, :, -6:, -6:] = 255
    assert (predict_logits(model, triggered, torch.device("cpu")).argmax(1) == 0).float().mean() < 0.5


def test_cut_mix_pastes_one_box_from_a_shuffled_batch():
    from meca_cli.core.augment import cut_mix

    x = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1).expand(6, 3, 8, 8).clone()  # image i is all i
    labels = torch.arange(6) + 10
    mixed, pasted, kept = cut_mix(x, labels, torch.Generator().manual_seed(5))
    source = mixed[:, 0]  # which image each pixel came from
    moved = [i for i in range(6) if pasted[i] != labels[i]]
    assert moved and 0 < kept < 1
    box = source[moved[0]] != moved[0]
    rows, cols = box.any(1).nonzero().squeeze(1), box.any(0).nonzero().squeeze(1)
    assert box.sum() == len(rows) * len(cols)  # one solid rectangle
    assert box.float().mean() == 1 - kept
    for i in range(6):
        partner = int(pasted[i]) - 10
        assert (source[i][box] == partner).all() and (source[i][~box] == i).all()  # same box, the partner's pixels
    assert sorted((pasted - 10).tolist()) == list(range(6))  # a permutation of the batch


def test_scan_flags_the_class_with_two_identities_and_its_smaller_subgroup():
    """Ten classes of Gaussian representations sharing one within-class covariance; class 3
    also holds 30 samples whose identity is another class's shifted by a trigger direction."""
    from meca_cli.defences.scan import scan_detect

    g = torch.Generator().manual_seed(0)
    dims, classes = 16, 10
    identities = torch.randn(classes, dims, generator=g, dtype=torch.float64) * 4
    mix = torch.randn(dims, dims, generator=g, dtype=torch.float64) / dims ** 0.5

    def draw(identity, n):
        return identity + torch.randn(n, dims, generator=g, dtype=torch.float64) @ mix

    clean_labels = torch.arange(classes).repeat_interleave(20)
    clean = torch.cat([draw(identities[c], 20) for c in range(classes)])
    labels = torch.arange(classes).repeat_interleave(100)
    features = torch.cat([draw(identities[c], 100) for c in range(classes)])
    poison = draw(identities[7] + torch.randn(dims, generator=g, dtype=torch.float64) * 3, 30)
    features, labels = torch.cat([features, poison]), torch.cat([labels, torch.full((30,), 3)])
    flagged, z = scan_detect(features, labels, clean, clean_labels)
    assert max(z, key=z.get) == 3 and z[3] > 7.39 and sorted(z.values())[-2] < 7.39
    assert flagged[-30:].all() and int(flagged[:-30].sum()) <= 3
    nothing, _ = scan_detect(features[:-30], labels[:-30], clean, clean_labels)
    assert not nothing.any()  # without the contaminating subgroup no class stands out


def test_dbr_finds_the_samples_whose_representation_a_rotation_moves_most():
    from meca_cli.config import TrainConfig
    from meca_cli.core.train import fit
    from meca_cli.defences.dbr import DBRConfig, dbr

    images, labels, poison = _patched_set()
    train = TrainConfig(epochs=12, min_steps=0, batch_size=15, lr=0.01, augment=False)
    model = fit(_model(), images, labels, train, torch.device("cpu"))
    _, suspects, fct = dbr(model, images, labels, torch.device("cpu"), DBRConfig(suspect_fraction=20 / 90, epochs=1))
    assert int(suspects.sum()) == 20
    assert int(suspects[poison].sum()) >= 16, fct[poison]
