from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from meca_cli.errors import ArtifactError
from meca_cli.store.artifacts import format_csv, read_csv, read_index_list, write_csv, write_index_list
from meca_cli.store.checkpoint import ModelMeta, load_model, load_tensors, save_model
from meca_cli.store.manifest import Step, fingerprint, read_manifest


@given(st.lists(st.integers(0, 10_000), max_size=100))
def test_index_list_round_trip(tmp_path_factory, values):
    path = tmp_path_factory.mktemp("idx") / "x.idx"
    write_index_list(path, values)
    assert read_index_list(path) == sorted(set(values))


def test_index_list_rejects_nonsense(tmp_path):
    path = tmp_path / "bad.idx"
    path.write_text("1\n2\nthree\n")
    with pytest.raises(ArtifactError, match="bad.idx:3"):
        read_index_list(path)
    path.write_text("1\n99\n")
    with pytest.raises(ArtifactError, match="out of range"):
        read_index_list(path, limit=10)


@given(st.lists(st.tuples(st.integers(), st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)),
                max_size=20))
def test_csv_round_trip_neutralises_formulas(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("csv") / "t.csv"
    write_csv(path, ("index", "name"), rows)
    back = read_csv(path, ("index", "name"))
    assert [int(r["index"]) for r in back] == [r[0] for r in rows]
    for (_, name), row in zip(rows, back):
        written = name.replace("\r", "\\r")
        dangerous = written.startswith(("=", "+", "-", "@", "\t"))
        assert row["name"] == ("'" + written if dangerous else written)


def test_formula_cells_are_quoted():
    text = format_csv(("path",), [("=HYPERLINK(1)",), ("-x.png",), ("ok.png",)])
    assert text.splitlines()[1:] == ["'=HYPERLINK(1)", "'-x.png", "ok.png"]


_params = st.dictionaries(st.text(min_size=1, max_size=8),
                          st.one_of(st.integers(), st.floats(allow_nan=False), st.text(max_size=8),
                                    st.lists(st.integers(), max_size=4)), min_size=1, max_size=6)


@given(_params, st.randoms(use_true_random=False))
def test_fingerprint_ignores_key_order_and_sees_changes(params, rng):
    keys = list(params)
    rng.shuffle(keys)
    assert fingerprint({k: params[k] for k in keys}) == fingerprint(params)
    changed_key = rng.choice(keys)
    changed = {**params, changed_key: [params[changed_key], "changed"]}
    assert fingerprint(changed) != fingerprint(params)
    assert fingerprint({**params, "added-key!": 1}) != fingerprint(params)
    step = Step("s", Path("."), {"data": "sha256:1"}, params)
    assert Step("s", Path("."), {"data": "sha256:2"}, params).fingerprint != step.fingerprint
    assert Step("s", Path("."), {"data": "sha256:1"}, changed).fingerprint != step.fingerprint


def test_step_manifest_lifecycle(tmp_path):
    step = Step("demo", tmp_path / "s", {"data": "sha256:1"}, {"k": 1})
    assert not step.up_to_date()
    step.begin()
    (step.out / "out.txt").write_text("hello")
    step.complete(["out.txt"], {"n": 1})
    assert Step("demo", tmp_path / "s", {"data": "sha256:1"}, {"k": 1}).up_to_date()
    # A parameter or input change, or a tampered output, makes it stale.
    assert not Step("demo", tmp_path / "s", {"data": "sha256:1"}, {"k": 2}).up_to_date()
    assert not Step("demo", tmp_path / "s", {"data": "sha256:2"}, {"k": 1}).up_to_date()
    (step.out / "out.txt").write_text("changed")
    assert not step.up_to_date()
    # begin() removes the manifest first, so a crash mid-step never looks complete.
    step.begin()
    assert read_manifest(step.out) is None


def test_manifest_from_another_version_is_refused(tmp_path):
    (tmp_path / "manifest.json").write_text('{"meca_manifest_version": "0"}')
    with pytest.raises(ArtifactError, match="another version"):
        read_manifest(tmp_path)


def test_checkpoint_round_trip_and_metadata(tmp_path):
    from meca_cli.core.models import build_model

    torch.manual_seed(0)
    model = build_model("smallcnn", 3, 16)
    path = tmp_path / "model.safetensors"
    save_model(path, model, ModelMeta("smallcnn", ["a", "b", "c"], 16, step="train", config={"lr": 0.1}))
    loaded, meta = load_model(path)
    assert meta.classes == ["a", "b", "c"] and meta.config == {"lr": 0.1}
    for (k, v), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


def test_pickle_checkpoints_are_refused(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"\x80\x04not a safetensors file")
    with pytest.raises(ArtifactError, match="only .safetensors"):
        load_model(path)
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="unreadable"):
        load_model(fake)


def test_checkpoint_bytes_depend_on_content_only(tmp_path):
    """Equal weights and metadata give byte-identical files (the manifests compare hashes)."""
    import subprocess
    import sys

    code = ("import sys, torch; from pathlib import Path; from meca_cli.store.checkpoint import save_tensors; "
            "save_tensors(Path(sys.argv[1]), {'b': torch.arange(3.0), 'a': torch.ones(2, 2, dtype=torch.int64)}, "
            "{f'key{i}': str(i) for i in range(12)})")
    for name in ("one.safetensors", "two.safetensors"):  # separate processes: separate hash seeds
        subprocess.run([sys.executable, "-c", code, str(tmp_path / name)], check=True)
    one, two = (tmp_path / "one.safetensors").read_bytes(), (tmp_path / "two.safetensors").read_bytes()
    assert one == two
    tensors, meta = load_tensors(tmp_path / "one.safetensors")
    assert meta == {f"key{i}": str(i) for i in range(12)} and tensors["a"].dtype == torch.int64
    assert (tensors["b"] == torch.arange(3.0)).all()


def test_json_text_writes_null_for_non_finite_floats_so_strict_parsers_accept_it():
    import json
    import math

    from meca_cli.store.artifacts import json_text

    def strict(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    text = json_text({"recall": math.nan, "rows": [1.5, math.inf, (-math.inf, 2)], "n": 3})
    assert json.loads(text, parse_constant=strict) == {"recall": None, "rows": [1.5, None, [None, 2]], "n": 3}
