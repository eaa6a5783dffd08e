"""Tests for meca_cli.core.attacks: each attack's defining property on small random images."""

from __future__ import annotations

import math

import pytest
import torch

from meca_cli.core import attacks as A
from meca_cli.errors import ConfigError

torch.set_num_threads(1)

N, CLASSES, SIZE = 80, 10, 32  # 8 images per class


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1234)
    images = torch.randint(0, 256, (N, 3, SIZE, SIZE), generator=g, dtype=torch.uint8)
    labels = torch.arange(N) % CLASSES
    return images, labels


def config(name: str, **kw) -> A.AttackConfig:
    """Rates large enough for a few dozen images to give several poison and cover samples."""
    kw.setdefault("rate", 0.05 if name in ("sig", "tact") else 0.1)  # both draw from one class of 8
    if name != "sig":
        kw.setdefault("cover_rate", 0.1)
    return A.AttackConfig(name, **kw)


def run(data, name: str, **kw) -> tuple[A.AttackConfig, A.PoisonResult]:
    cfg = config(name, **kw)
    return cfg, A.poison(*data, CLASSES, cfg)


def f(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float32) / 255


def u8(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round().clamp(0, 255).to(torch.uint8)


def changed_pixels(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Bool ... x H x W: pixels where any channel differs."""
    return (a != b).any(dim=-3)


def assert_close_u8(actual: torch.Tensor, expected_float: torch.Tensor, tol: int = 1) -> None:
    """uint8 result equals the float formula after rounding, up to `tol` levels."""
    diff = (actual.to(torch.int16) - u8(expected_float).to(torch.int16)).abs()
    assert int(diff.max()) <= tol


# ---------------------------------------------------------------------------------------------
# Properties shared by all attacks


@pytest.mark.parametrize("name", A.ATTACK_NAMES)
def test_counts_roles_labels_and_clean_images(data, name):
    images, labels = data
    cfg, res = run(data, name)
    assert res.images.dtype == torch.uint8 and res.images.shape == images.shape
    assert res.labels.dtype == torch.int64 and len(res.roles) == len(res.details) == N
    assert set(res.roles) <= set(A.ROLES)
    poison, cover = res.poison_indices, res.cover_indices
    expected_poison = int(N * cfg.rate)
    if name == "sig":
        expected_poison = min(expected_poison, int((labels == cfg.target).sum()))
    assert len(poison) == expected_poison > 0
    assert len(cover) == int(N * cfg.effective_cover_rate)
    assert not set(poison.tolist()) & set(cover.tolist())
    clean = torch.tensor([r == "clean" for r in res.roles])
    assert torch.equal(res.images[clean], images[clean])
    assert torch.equal(res.labels[clean], labels[clean])
    assert all(d == "" for d, r in zip(res.details, res.roles) if r == "clean")
    expected_labels = labels[poison] if name == "sig" else torch.full_like(labels[poison], cfg.target)
    assert torch.equal(res.labels[poison], expected_labels)
    assert torch.equal(res.labels[cover], labels[cover])
    touched = torch.cat([poison, cover])
    assert changed_pixels(res.images[touched], images[touched]).flatten(1).any(1).all()


@pytest.mark.parametrize("name", A.ATTACK_NAMES)
def test_deterministic_given_seed(data, name):
    _, a = run(data, name, seed=3)
    _, b = run(data, name, seed=3)
    _, c = run(data, name, seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.roles == b.roles and a.details == b.details
    assert a.trigger_state.keys() == b.trigger_state.keys()
    assert all(torch.equal(a.trigger_state[k], b.trigger_state[k]) for k in a.trigger_state)
    assert not torch.equal(a.poison_indices, c.poison_indices)


def test_global_rng_untouched(data):
    torch.manual_seed(99)
    before = torch.get_rng_state()
    run(data, "physicalba")
    run(data, "wanet")
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("name", A.ATTACK_NAMES)
def test_trigger_state_survives_safetensors(data, name, tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    images, _ = data
    cfg, res = run(data, name)
    assert all(isinstance(v, torch.Tensor) for v in res.trigger_state.values())
    path = tmp_path / "trigger.safetensors"
    safetensors.save_file(res.trigger_state, str(path))
    loaded = safetensors.load_file(str(path))
    assert torch.equal(A.apply_test_trigger(images[:8], cfg, loaded),
                       A.apply_test_trigger(images[:8], cfg, res.trigger_state))


@pytest.mark.parametrize("name", ["badnet", "blend", "sig", "tact", "wanet"])
def test_test_trigger_equals_training_trigger(data, name):
    images, _ = data
    cfg, res = run(data, name)
    poison = res.poison_indices
    assert torch.equal(A.apply_test_trigger(images[poison], cfg, res.trigger_state), res.images[poison])


@pytest.mark.parametrize("name", ["physicalba", "adaptive_blend", "adaptive_patch"])
def test_test_trigger_differs_from_training(data, name):
    images, _ = data
    cfg, res = run(data, name)
    poison = res.poison_indices
    test = A.apply_test_trigger(images[poison], cfg, res.trigger_state)
    assert not torch.equal(test, res.images[poison])


def test_apply_test_trigger_keeps_input_and_type(data):
    images, _ = data
    copy = images.clone()
    cfg, res = run(data, "blend")
    out = A.apply_test_trigger(images, cfg, res.trigger_state)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    assert torch.equal(images, copy)


# ---------------------------------------------------------------------------------------------
# Per-attack defining properties


def test_badnet_white_square_bottom_right(data):
    images, _ = data
    cfg, res = run(data, "badnet")
    poison = res.poison_indices
    out = res.images[poison]
    assert (out[:, :, 29:, 29:] == 255).all()
    outside = torch.ones(SIZE, SIZE, dtype=torch.bool)
    outside[29:, 29:] = False
    assert torch.equal(out[:, :, outside], images[poison][:, :, outside])
    test = A.apply_test_trigger(images, cfg, res.trigger_state)
    assert (test[:, :, 29:, 29:] == 255).all()
    assert torch.equal(test[:, :, outside], images[:, :, outside])


@pytest.mark.parametrize("key", A.BLEND_KEYS)
def test_blend_is_convex_mix_with_key(data, key):
    images, _ = data
    cfg, res = run(data, "blend", blend_key=key)
    poison = res.poison_indices
    t = res.trigger_state["test_pattern"]
    assert torch.equal(t, A.blend_key(cfg))
    assert_close_u8(res.images[poison], 0.8 * f(images[poison]) + 0.2 * t)
    assert changed_pixels(res.images[poison], images[poison]).float().mean() > 0.9  # whole frame
    assert float(res.trigger_state["test_alpha"]) == pytest.approx(0.2)


def test_noise_key_follows_trigger_seed():
    a = A.blend_key(A.AttackConfig("blend", blend_key="noise", seed=0))
    b = A.blend_key(A.AttackConfig("blend", blend_key="noise", seed=1))
    c = A.blend_key(A.AttackConfig("blend", blend_key="noise", seed=1, trigger_seed=0))
    assert not torch.equal(a, b) and torch.equal(a, c)
    levels = a * 255
    assert torch.equal(levels, levels.round()) and 100 < float(levels.mean()) < 155
    assert torch.equal(A.blend_key(A.AttackConfig("blend", seed=0)), A.blend_key(A.AttackConfig("blend", seed=5)))


def test_cartoon_key_statistics():
    key = A.cartoon_key()
    assert key.shape == (3, 32, 32)
    mean = key.mean((1, 2)) * 255
    assert torch.allclose(mean, torch.tensor([200.0, 175.0, 150.0]), atol=15)
    near_white = (key.min(0).values >= 220 / 255).float().mean()
    near_black = (key.max(0).values <= 60 / 255).float().mean()
    assert 0.25 <= near_white <= 0.35 and 0.02 <= near_black <= 0.05
    grey = key.mean(0)
    neighbour = torch.cat([(grey[:, 1:] - grey[:, :-1]).abs().flatten(), (grey[1:] - grey[:-1]).abs().flatten()])
    assert 0.10 <= float(neighbour.mean()) <= 0.16


def test_sig_target_class_only_clipped_sine(data):
    images, labels = data
    cfg, res = run(data, "sig", rate=0.05)
    poison = res.poison_indices
    assert (labels[poison] == cfg.target).all()
    assert res.cover_indices.numel() == 0
    v = (30 / 255) * torch.sin(2 * math.pi * 6 * torch.arange(SIZE) / SIZE)
    x = f(images[poison])
    assert_close_u8(res.images[poison], (x + v).clamp(0, 1))
    # The signal depends on the column only.
    delta = f(res.images[poison]) - x
    unclipped = ((x + v) > 0) & ((x + v) < 1)
    assert torch.allclose(delta[unclipped], v.expand_as(x)[unclipped], atol=1 / 255)


def test_sig_count_capped_by_target_class(data):
    _, labels = data
    cfg, res = run(data, "sig", rate=0.5)
    assert res.poison_indices.tolist() == torch.nonzero(labels == cfg.target).flatten().tolist()


def test_wanet_small_warp_and_noisy_covers(data):
    images, labels = data
    cfg, res = run(data, "wanet")
    state = res.trigger_state
    grid = state["wanet_grid"]
    assert torch.equal(grid, A.wanet_grid(state["wanet_control"], SIZE, SIZE, 0.5))
    assert float(state["wanet_control"].abs().mean()) == pytest.approx(1.0, abs=1e-5)
    lin = torch.linspace(-1, 1, SIZE)
    identity = torch.stack(torch.meshgrid(lin, lin, indexing="ij")[::-1], dim=-1)
    shift_px = (grid - identity).abs() * (SIZE - 1) / 2
    assert 0.05 < float(shift_px.max()) < 1.5  # sub-pixel to about one pixel
    poison, cover = res.poison_indices, res.cover_indices
    assert_close_u8(res.images[poison], A.warp(f(images[poison]), grid))
    seeds = [int(res.details[i].removeprefix("noise_seed=")) for i in cover.tolist()]
    assert all(res.details[i].startswith("noise_seed=") for i in cover.tolist())
    assert len(set(seeds)) == len(seeds)
    noisy = torch.stack([A.wanet_noise_grid(grid, s) for s in seeds])
    assert_close_u8(res.images[cover], A.warp(f(images[cover]), noisy))
    assert not torch.equal(res.images[cover], A.apply_test_trigger(images[cover], cfg, state))
    assert torch.equal(res.labels[cover], labels[cover])


def test_wanet_shared_noise_variant(data):
    images, _ = data
    _, res = run(data, "wanet", wanet_shared_noise=True)
    cover = res.cover_indices
    details = {res.details[i] for i in cover.tolist()}
    assert len(details) == 1
    noisy = A.wanet_noise_grid(res.trigger_state["wanet_grid"], int(details.pop().removeprefix("noise_seed=")))
    assert_close_u8(res.images[cover], A.warp(f(images[cover]), noisy))


def test_physicalba_stamp_then_recorded_draw(data):
    images, labels = data
    cfg, res = run(data, "physicalba", cover_rate=0)
    poison = res.poison_indices
    assert (res.labels[poison] == 1).all() and (labels[poison] != 1).any()
    state = res.trigger_state
    pattern, mask = state["test_pattern"], state["test_mask"]
    assert 125 <= int(mask.sum()) <= 140
    rows, cols = torch.nonzero(mask, as_tuple=True)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (1, 13, 18, 30)
    flips = set()
    for i in poison.tolist():
        fields = dict(item.split("=") for item in res.details[i].split())
        assert set(fields) == {"flip", "brightness", "contrast", "angle", "translate", "scale"}
        tx, ty = map(int, fields["translate"].split(","))
        draw = A.PhysicalDraw(fields["flip"] == "1", float(fields["brightness"]), float(fields["contrast"]),
                              float(fields["angle"]), (tx, ty), float(fields["scale"]))
        assert 0.8 <= draw.brightness <= 1.2 and 0.8 <= draw.contrast <= 1.2 and abs(draw.angle) <= 10
        assert 0.8 <= draw.scale <= 0.9 and abs(tx) <= 3 and abs(ty) <= 3
        flips.add(draw.flip)
        expected = A.apply_physical(A.stamp(f(images[i]), pattern, mask, 1.0), draw)
        assert_close_u8(res.images[i], expected, tol=0)
        assert (res.images[i] == 0).all(0).float().mean() > 0.1  # the shrink leaves a black border
    assert len(flips) == 2
    test = A.apply_test_trigger(images, cfg, state)
    inside = mask.bool()
    assert torch.equal(test[:, :, ~inside], images[:, :, ~inside])
    assert torch.equal(test[:, :, inside], u8(pattern)[:, inside].expand(N, -1, -1))


def test_physical_transform_components():
    x = torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    identity = dict(flip=False, brightness=1.0, contrast=1.0, angle=0.0, translate=(0, 0), scale=1.0)
    assert torch.equal(A.apply_physical(x, A.PhysicalDraw(**identity)), x)
    assert torch.equal(A.apply_physical(x, A.PhysicalDraw(**{**identity, "flip": True})), x.flip(-1))
    bright = A.apply_physical(x, A.PhysicalDraw(**{**identity, "brightness": 1.2}))
    assert torch.allclose(bright, (x * 1.2).clamp(0, 1), atol=1e-6)
    grey_mean = (0.2989 * x[0] + 0.587 * x[1] + 0.114 * x[2]).mean()
    flat = A.apply_physical(x, A.PhysicalDraw(**{**identity, "contrast": 0.8}))
    assert torch.allclose(flat, (0.8 * x + 0.2 * grey_mean).clamp(0, 1), atol=1e-3)
    shifted = A.apply_physical(x, A.PhysicalDraw(**{**identity, "translate": (3, 0)}))
    assert torch.equal(shifted[:, :, 3:], x[:, :, :-3]) and (shifted[:, :, :3] == 0).all()
    shrunk = A.apply_physical(x, A.PhysicalDraw(**{**identity, "scale": 0.8}))
    assert (shrunk[:, :2] == 0).all() and (shrunk[:, -2:] == 0).all()


def test_physicalba_square_trigger(data):
    _, res = run(data, "physicalba", physicalba_trigger="square")
    mask = res.trigger_state["test_mask"]
    assert int(mask.sum()) == 9 and mask[29:, 29:].all()


def test_tact_source_poison_cover_classes_and_square(data):
    images, labels = data
    cfg, res = run(data, "tact", source=0, cover_classes=(5, 7))
    poison, cover = res.poison_indices, res.cover_indices
    assert len(poison) == 4 and (labels[poison] == 0).all()
    assert len(cover) == 8 and torch.isin(labels[cover], torch.tensor([5, 7])).all()
    assert (res.labels[poison] == 1).all() and torch.equal(res.labels[cover], labels[cover])
    square = A.noise_square_trigger(A._generator(cfg.effective_trigger_seed, "noise_square"))[0][:, 21:29, 21:29]
    block = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    block[21:29, 21:29] = True
    for idx in (poison, cover):
        assert torch.equal(res.images[idx][:, :, block], u8(square).flatten(1).expand(len(idx), -1, -1))
        assert torch.equal(res.images[idx][:, :, ~block], images[idx][:, :, ~block])
    assert float(square.std()) > 0.15  # noise, not a flat colour


def test_tact_shares_square_with_adaptive_patch():
    tact = A.build_trigger_state(A.AttackConfig("tact"), SIZE, SIZE)
    patch = A.build_trigger_state(A.AttackConfig("adaptive_patch"), SIZE, SIZE)
    assert torch.equal(tact["test_pattern"], patch["train_pattern"][3])


def test_adaptive_blend_half_the_pieces_then_full_test_trigger(data):
    images, _ = data
    cfg, res = run(data, "adaptive_blend")
    key = res.trigger_state["test_pattern"]
    masks = set()
    for i in torch.cat([res.poison_indices, res.cover_indices]).tolist():
        x, out = images[i], res.images[i]
        changed_blocks = [b for b in range(16)
                          if (out[:, 8 * (b // 4):8 * (b // 4) + 8, 8 * (b % 4):8 * (b % 4) + 8]
                              != x[:, 8 * (b // 4):8 * (b // 4) + 8, 8 * (b % 4):8 * (b % 4) + 8]).any()]
        assert len(changed_blocks) == 8
        assert res.details[i] == "pieces=" + ",".join(map(str, changed_blocks))
        mask = A.piece_mask(changed_blocks, 4, SIZE, SIZE)
        assert_close_u8(out, f(x) + 0.15 * mask * (key - f(x)))
        masks.add(tuple(changed_blocks))
    assert len(masks) > 1  # a fresh mask per image
    test = A.apply_test_trigger(images, cfg, res.trigger_state)
    assert_close_u8(test, 0.8 * f(images) + 0.2 * key)


def test_adaptive_patch_one_trigger_each_balanced(data):
    images, _ = data
    cfg, res = run(data, "adaptive_patch", rate=0.1, cover_rate=0.1)
    state = res.trigger_state
    patterns, masks, alphas = state["train_pattern"], state["train_mask"], state["train_alpha"]
    assert alphas.tolist() == pytest.approx([0.5, 0.2, 0.5, 0.3])
    for idx in (res.poison_indices, res.cover_indices):
        ids = [int(res.details[i].removeprefix("trigger=")) for i in idx.tolist()]
        counts = torch.bincount(torch.tensor(ids), minlength=4)
        assert int(counts.min()) >= 1 and int(counts.max() - counts.min()) <= 1
        for i, j in zip(idx.tolist(), ids):
            x, out = images[i], res.images[i]
            inside = masks[j].bool()
            changed = changed_pixels(out, x)
            assert not changed[~inside].any()
            assert changed[inside].float().mean() > 0.8
            assert_close_u8(out, A.stamp(f(x), patterns[j], masks[j], float(alphas[j])))


def test_adaptive_patch_asymmetric_test_trigger(data):
    images, _ = data
    cfg, res = run(data, "adaptive_patch")
    state = res.trigger_state
    pattern, mask = state["test_pattern"], state["test_mask"]
    assert float(state["test_alpha"]) == 1.0
    expected_mask = torch.zeros(SIZE, SIZE)
    expected_mask[27:, :5] = expected_mask[27:, 27:] = 1
    for r in (0, 29):
        for c in (0, 29):
            expected_mask[r:r + 3, c:c + 3] = 1
    assert torch.equal(mask, expected_mask)
    icon = A.icon_patch()
    assert torch.equal(pattern[:, 27:29, :5], icon[:, :2])  # icon rows not covered by the corner pattern
    assert torch.equal(pattern[:, 29:, 29:], A.badnet_corners_trigger()[0][:, 29:, 29:])  # corner on top
    for j in range(4):
        assert not torch.equal(state["train_mask"][j], mask)
    test = A.apply_test_trigger(images, cfg, state)
    inside = mask.bool()
    assert torch.equal(test[:, :, inside], u8(pattern)[:, inside].expand(N, -1, -1))
    assert torch.equal(test[:, :, ~inside], images[:, :, ~inside])


def test_patch_assignment_matches_contiguous_quarters():
    ids = A.patch_assignment(150)
    assert torch.bincount(ids).tolist() == [38, 37, 38, 37]
    assert torch.equal(ids, ids.sort().values)


# ---------------------------------------------------------------------------------------------
# ASR population, sizes, validation


def test_asr_population():
    labels = torch.tensor([0, 1, 2, 1, 0, 5])
    assert A.asr_population(labels, A.AttackConfig("badnet", target=1)).tolist() == [1, 0, 1, 0, 1, 1]
    assert A.asr_population(labels, A.AttackConfig("sig", target=0)).tolist() == [0, 1, 1, 1, 0, 1]
    assert A.asr_population(labels, A.AttackConfig("tact", source=0, target=1)).tolist() == [1, 0, 0, 0, 1, 0]


def test_default_cover_rates():
    expected = {"wanet": 0.05, "tact": 0.01, "adaptive_blend": 0.01, "adaptive_patch": 0.01}
    for name in A.ATTACK_NAMES:
        assert A.AttackConfig(name).effective_cover_rate == expected.get(name, 0.0)
    assert A.AttackConfig("badnet").rate == 0.05 and A.AttackConfig("badnet").target == 1


def test_other_image_sizes():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (20, 3, 48, 40), generator=g, dtype=torch.uint8)
    labels = torch.arange(20) % CLASSES
    for name in A.ATTACK_NAMES:
        cfg = A.AttackConfig(name, rate=0.2)
        res = A.poison(images, labels, CLASSES, cfg)
        assert res.images.shape == images.shape
        assert A.apply_test_trigger(images, cfg, res.trigger_state).shape == images.shape
    cfg = A.AttackConfig("badnet", rate=0.2)
    test = A.apply_test_trigger(images, cfg, A.poison(images, labels, CLASSES, cfg).trigger_state)
    changed = changed_pixels(test, images).any(0)
    rows, cols = torch.nonzero(changed, as_tuple=True)
    assert int(rows.min()) >= 40 and int(rows.max()) == 47 and int(cols.min()) >= 33 and int(cols.max()) == 39


def test_invalid_inputs(data):
    images, labels = data
    with pytest.raises(ConfigError):
        A.AttackConfig("nope")
    with pytest.raises(ConfigError):
        A.AttackConfig("sig", cover_rate=0.1)
    with pytest.raises(ConfigError):
        A.AttackConfig("tact", source=1, target=1)
    with pytest.raises(ConfigError):
        A.AttackConfig("badnet", rate=1.5)
    with pytest.raises(ConfigError):
        A.poison(images, labels, CLASSES, A.AttackConfig("badnet", target=10))
    with pytest.raises(ConfigError):
        A.poison(images, labels, CLASSES, A.AttackConfig("badnet", rate=0.7, cover_rate=0.5))
    with pytest.raises(ValueError):
        A.poison(images.float(), labels, CLASSES, A.AttackConfig("badnet"))
    with pytest.raises(ValueError):
        A.poison(images, labels[:-1], CLASSES, A.AttackConfig("badnet"))
