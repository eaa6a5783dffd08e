"""Bad input: a one-line error naming the file (exit 2), or a counted skip with --skip-bad;
never a half-written step."""

import json
import os

import pytest
from PIL import Image

from meca_cli.cli import app
from tests.conftest import make_image_folder, snapshot


def _train(runner, data, out, *extra):
    return runner.invoke(app, ["train", str(data), "-o", str(out), "--epochs", "1", "--image-size", "16",
                               "--batch-size", "8", "--format", "json", *extra])


@pytest.mark.parametrize("content,name", [
    (b"", "zero.png"),
    (b"this is not an image", "text.jpg"),
    (None, "truncated.jpg"),
    (None, "truncated.png"),
])
def test_undecodable_file_names_the_file_or_is_skipped(runner, tmp_path, content, name):
    data = tmp_path / "data"
    make_image_folder(data, classes=2, per_class=6)
    bad = data / "class0" / name
    if content is None:  # a real image cut in half
        full = tmp_path / f"full{bad.suffix}"
        Image.effect_noise((32, 32), 60).convert("RGB").save(full)
        raw = full.read_bytes()
        bad.write_bytes(raw[: len(raw) // 2])
    else:
        bad.write_bytes(content)
    r = _train(runner, data, tmp_path / "out")
    if content is None and r.exit_code == 0:
        pytest.skip("this Pillow build decodes a half image (it pads the missing part)")
    assert r.exit_code == 2
    assert name in r.stderr and "--skip-bad" in r.stderr
    assert r.stdout == "" and not (tmp_path / "out" / "manifest.json").exists()
    ok = _train(runner, data, tmp_path / "out2", "--skip-bad")
    assert ok.exit_code == 0, ok.stderr
    summary = json.loads(ok.stdout)["summary"]
    assert summary["samples"] == 12 and len(summary["skipped_images"]) == 1 and name in summary["skipped_images"][0]


def test_folder_layout_errors(runner, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = _train(runner, empty, tmp_path / "o1")
    assert r.exit_code == 2 and "found 0 class folder" in r.stderr
    data = tmp_path / "data"
    make_image_folder(data, classes=2, per_class=3)
    (data / "class_empty").mkdir()
    r = _train(runner, data, tmp_path / "o2")
    assert r.exit_code == 2 and "class_empty" in r.stderr and "no images" in r.stderr


def test_image_modes_sizes_and_names(runner, tmp_path):
    data = tmp_path / "data"
    (data / "a b").mkdir(parents=True)
    (data / "ünï").mkdir()
    Image.new("L", (20, 30), 90).save(data / "a b" / "grey img.png")
    Image.new("RGBA", (64, 64), (1, 2, 3, 100)).save(data / "a b" / "-leading-dash.png")
    Image.new("P", (10, 10)).save(data / "a b" / "palette.gif")
    Image.new("I;16", (16, 16), 3000).save(data / "ünï" / "sixteen.png")
    Image.new("CMYK", (40, 8), (0, 50, 100, 0)).save(data / "ünï" / "cmyk.jpg")
    Image.new("RGB", (300, 7), (9, 9, 9)).save(data / "ünï" / "=formula.bmp")
    before = snapshot(data)
    r = runner.invoke(app, ["sanitize", str(data), "--out", str(tmp_path / "run"), "--epochs", "1", "--rounds", "1",
                            "--finetune-epochs", "1", "--image-size", "16", "--batch-size", "4"])
    assert r.exit_code == 0, r.stderr
    verdicts = (tmp_path / "run" / "verdicts.csv").read_text(encoding="utf-8")
    assert "ünï/=formula.bmp" in verdicts  # unicode and '=' in names survive, and no cell starts a formula
    assert all(not line.split(",")[1].startswith(("=", "+", "-", "@")) for line in verdicts.splitlines()[1:])
    assert snapshot(data) == before


def test_decompression_bomb_is_refused(runner, tmp_path, monkeypatch):
    data = tmp_path / "data"
    make_image_folder(data, classes=2, per_class=3)
    Image.new("RGB", (200, 200)).save(data / "class1" / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 200x200 now counts as a bomb
    r = _train(runner, data, tmp_path / "o")
    assert r.exit_code == 2 and "bomb.png" in r.stderr and "Decompression" in r.stderr


def test_symlinks_outside_the_folder_and_loops(runner, tmp_path):
    data = tmp_path / "data"
    make_image_folder(data, classes=2, per_class=4)
    outside = tmp_path / "secret.png"
    Image.new("RGB", (8, 8)).save(outside)
    os.symlink(outside, data / "class0" / "link.png")
    r = _train(runner, data, tmp_path / "o")
    assert r.exit_code == 2 and "link.png" in r.stderr and "outside" in r.stderr
    loop_a, loop_b = data / "class1" / "a.png", data / "class1" / "b.png"
    os.symlink(loop_b, loop_a)
    os.symlink(loop_a, loop_b)
    os.symlink(data, data / "class1" / "dirloop")  # a directory loop is not followed
    ok = _train(runner, data, tmp_path / "o2", "--skip-bad")
    assert ok.exit_code == 0, ok.stderr
    skipped = json.loads(ok.stdout)["summary"]["skipped_images"]
    assert len(skipped) == 3 and json.loads(ok.stdout)["summary"]["samples"] == 8


def test_unwritable_output_and_bad_artifacts(runner, tmp_path, tiny_folder):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = _train(runner, tiny_folder, blocker / "out")
    assert r.exit_code == 2 and "cannot write" in r.stderr
    bad_idx = tmp_path / "bad.idx"
    bad_idx.write_text("0\n1\n999\n")
    r = _train(runner, tiny_folder, tmp_path / "o", "--indices", str(bad_idx))
    assert r.exit_code == 2 and "bad.idx:3" in r.stderr
    scores = tmp_path / "scores.csv"
    scores.write_text("index,path,label,kl,pred,loss,conf\n0,a,0,notanumber,0,0,0\n")
    r = runner.invoke(app, ["partition", str(scores), "-o", str(tmp_path / "p")])
    assert r.exit_code == 2 and "scores.csv:2" in r.stderr
    assert not (tmp_path / "p" / "manifest.json").exists()


def test_checkpoint_for_other_classes_is_refused(runner, tmp_path, tiny_folder):
    other = tmp_path / "other"
    make_image_folder(other, classes=2, per_class=4)
    assert _train(runner, other, tmp_path / "m").exit_code == 0
    r = runner.invoke(app, ["score", str(tiny_folder), "-m", str(tmp_path / "m" / "model.safetensors"),
                            "-o", str(tmp_path / "s"), "--image-size", "16"])
    assert r.exit_code == 2 and "do not match" in r.stderr


def test_relabel_table_with_unknown_class_is_refused(runner, tmp_path, tiny_folder):
    table = tmp_path / "relabeled.csv"
    table.write_text("index,new_label\n" + "".join(f"{i},{7 if i == 5 else 0}\n" for i in range(60)))
    r = _train(runner, tiny_folder, tmp_path / "o", "--labels", str(table))
    assert r.exit_code == 2 and "relabeled.csv:7" in r.stderr and "not a class index" in r.stderr


def test_labels_marked_left_out_are_not_trained_on(runner, tmp_path, tiny_folder):
    import json

    table = tmp_path / "relabeled.csv"
    table.write_text("index,new_label\n" + "".join(f"{i},{-1 if i % 4 == 0 else 0}\n" for i in range(60)))
    r = _train(runner, tiny_folder, tmp_path / "o", "--labels", str(table))
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["summary"]["samples"] == 45
    table.write_text("index,new_label\n" + "".join(f"{i},-1\n" for i in range(60)))
    r = _train(runner, tiny_folder, tmp_path / "o2", "--labels", str(table))
    assert r.exit_code == 2 and "every sample to train on is marked left out" in r.stderr


def test_folder_changed_between_steps_is_caught(runner, tmp_path):
    data = tmp_path / "data"
    make_image_folder(data, classes=3, per_class=8)
    run = tmp_path / "run"
    fast = ["--epochs", "1", "--rounds", "1", "--finetune-epochs", "1", "--image-size", "16", "--batch-size", "8"]
    assert runner.invoke(app, ["sanitize", str(data), "--out", str(run), "--until", "partition", *fast]).exit_code == 0
    Image.new("RGB", (16, 16), (1, 2, 3)).save(data / "class0" / "added later.png")
    # The seed clean list indexes the old folder: a hand-chained step refuses it ...
    r = runner.invoke(app, ["enhance", str(data), "-m", str(run / "train-poisoned" / "model.safetensors"),
                            "--clean-seed", str(run / "partition" / "clean_seed.idx"), "-o", str(tmp_path / "e"),
                            "--rounds", "1", "--image-size", "16"])
    assert r.exit_code == 2 and "clean_seed.idx" in r.stderr and "another state" in r.stderr
    assert not (tmp_path / "e" / "manifest.json").exists()
    # ... and so does sanitize resumed past the steps that read the folder.
    r = runner.invoke(app, ["sanitize", str(data), "--out", str(run), "--from", "enhance", *fast])
    assert r.exit_code == 2 and "another state" in r.stderr
    assert not (run / "enhance" / "manifest.json").exists()
    # Re-running from the start recomputes everything on the folder as it is now.
    r = runner.invoke(app, ["sanitize", str(data), "--out", str(run), "--until", "enhance", "--format", "json", *fast])
    assert r.exit_code == 0, r.stderr
    assert not any(s["skipped"] for s in json.loads(r.stdout)["steps"])


def test_single_class_nested_folders_and_other_files(runner, tmp_path):
    one = tmp_path / "one"
    make_image_folder(one, classes=1, per_class=4)
    r = _train(runner, one, tmp_path / "o1")
    assert r.exit_code == 2 and "found 1 class folder" in r.stderr and "need at least 2" in r.stderr
    data = tmp_path / "data"
    make_image_folder(data, classes=2, per_class=3)
    (data / "class1" / "deeper" / "still").mkdir(parents=True)
    Image.new("RGB", (16, 16)).save(data / "class1" / "deeper" / "still" / "nested.png")
    (data / "class0" / "notes.txt").write_text("not an image")
    (data / "class0" / "README").write_text("no extension")
    (data / "class0" / ".hidden.png").write_bytes(b"junk")
    r = runner.invoke(app, ["train", str(data), "-o", str(tmp_path / "o2"), "--epochs", "1", "--image-size", "16",
                            "--format", "json"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["summary"]["samples"] == 7  # nested image counted; other files ignored


def test_export_stays_inside_its_target_and_exports_the_right_files(runner, tmp_path):
    from meca_cli.errors import ArtifactError
    from meca_cli.pipeline import export_plan

    data = tmp_path / "data"
    make_image_folder(data, classes=2, per_class=6)
    (data / "class0" / "a broken.png").write_bytes(b"not a png")  # sorts first: every later index shifts
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, tmp_path / ".sanitized.partial")  # a planted staging link
    before = snapshot(data)
    r = runner.invoke(app, ["sanitize", str(data), "--out", str(tmp_path / "run"), "--skip-bad", "--export",
                            str(tmp_path / "sanitized"), "--epochs", "1", "--rounds", "1", "--finetune-epochs", "1",
                            "--image-size", "16", "--batch-size", "4"])
    assert r.exit_code == 0, r.stderr
    assert list(outside.iterdir()) == [] and snapshot(data) == before
    rows = (tmp_path / "run" / "verdicts.csv").read_text().splitlines()[1:]
    assert len(rows) == 12
    exported_files = {f.name for f in (tmp_path / "sanitized").rglob("*.png")}
    for row in rows:  # each exported file is the very image its verdict row names
        index, path, new_label = int(row.split(",")[0]), row.split(",")[1], int(row.split(",")[-1])
        if new_label == -1:  # left out of the final training, so out of the export too
            assert f"{index:07d}.png" not in exported_files
            continue
        exported = tmp_path / "sanitized" / f"class{new_label}" / f"{index:07d}.png"
        assert exported.read_bytes() == (data / path).read_bytes()
    # A verdicts table that does not match the folder is refused before anything is copied.
    edited = tmp_path / "verdicts.csv"
    lines = (tmp_path / "run" / "verdicts.csv").read_text().splitlines()
    paths = [r.split(",")[1] for r in rows]
    edited.write_text("\n".join([lines[0], lines[1], lines[2].replace("class0/img001.png", "../../etc/passwd"),
                                  *lines[3:]]))
    with pytest.raises(ArtifactError, match="verdicts.csv:3"):
        export_plan(edited, paths, 2, "relabeled")
    edited.write_text("\n".join([lines[0], *lines[2:]]))  # a row missing: not every sample would be exported
    with pytest.raises(ArtifactError, match="holds 11 of the folder's 12 samples"):
        export_plan(edited, paths, 2, "relabeled")


def test_run_dir_of_another_version_and_mismatched_architecture(runner, tmp_path, tiny_folder):
    import torch
    from safetensors.torch import load_file

    from meca_cli.store.checkpoint import save_tensors

    run = tmp_path / "run"
    (run / "train-poisoned").mkdir(parents=True)
    (run / "train-poisoned" / "manifest.json").write_text('{"meca_manifest_version": "0", "step": "train"}')
    r = runner.invoke(app, ["sanitize", str(tiny_folder), "--out", str(run), "--epochs", "1", "--image-size", "16"])
    assert r.exit_code == 2 and "another version of meca" in r.stderr and "manifest.json" in r.stderr
    assert _train(runner, tiny_folder, tmp_path / "m").exit_code == 0
    ckpt = tmp_path / "m" / "model.safetensors"
    from safetensors import safe_open

    with safe_open(str(ckpt), "pt") as fh:
        meta = fh.metadata()
    tensors = load_file(str(ckpt))
    save_tensors(tmp_path / "wrong.safetensors", {**tensors, "extra.weight": torch.zeros(3)},
                 {**meta, "meca.arch": "resnet18"})
    r = runner.invoke(app, ["score", str(tiny_folder), "-m", str(tmp_path / "wrong.safetensors"), "-o",
                            str(tmp_path / "s"), "--image-size", "16"])
    assert r.exit_code == 2 and "wrong.safetensors" in r.stderr and "do not fit architecture 'resnet18'" in r.stderr
    assert not (tmp_path / "s" / "manifest.json").exists()


@pytest.mark.parametrize("where,message", [
    ("file", "export target is a file"),
    ("inside", "inside the input folder"),
    ("full", "exists and is not empty"),
])
def test_unusable_export_target_is_refused_before_any_step(runner, tmp_path, where, message):
    data = tmp_path / "data"
    make_image_folder(data, classes=2, per_class=3)
    target = {"file": tmp_path / "taken.txt", "inside": data / "sanitized", "full": tmp_path / "full"}[where]
    if where == "file":
        target.write_text("x")
    if where == "full":
        target.mkdir()
        (target / "keep.png").write_bytes(b"x")
    before = snapshot(data)
    r = runner.invoke(app, ["sanitize", str(data), "--out", str(tmp_path / "run"), "--export", str(target)])
    assert r.exit_code == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists() and snapshot(data) == before


def test_edited_attack_card_and_file_as_output_get_one_line_errors(runner, tmp_path):
    src = tmp_path / "src"
    make_image_folder(src, classes=2, per_class=4, size=32)
    (tmp_path / "afile").write_text("x")
    r = runner.invoke(app, ["poison", str(src), str(tmp_path / "afile")])
    assert r.exit_code == 2 and "output path is a file" in r.stderr
    poisoned = tmp_path / "poisoned"
    assert runner.invoke(app, ["poison", str(src), str(poisoned), "--rate", "0.25"]).exit_code == 0
    card = poisoned / "meca-attack.json"
    card.write_text(card.read_text().replace('"wanet_k"', '"renamed_key"'))
    r = runner.invoke(app, ["poison", str(src), str(tmp_path / "test"), "--test", "--like", str(poisoned)])
    assert r.exit_code == 2 and "meca-attack.json: attack card is not one" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "test").exists()


def test_evaluate_refuses_a_model_read_at_another_image_size(runner, tmp_path):
    data = tmp_path / "data"
    make_image_folder(data, classes=2, per_class=4)
    assert _train(runner, data, tmp_path / "m").exit_code == 0  # trained at 16 px
    r = runner.invoke(app, ["evaluate", str(tmp_path / "m" / "model.safetensors"), str(data), "--image-size", "24"])
    assert r.exit_code == 2 and "trained at image size 16" in r.stderr and "--image-size 16" in r.stderr


def test_corrupt_results_json_gets_a_one_line_error(runner, tmp_path):
    results = tmp_path / "results.json"
    results.write_text('{"runs": [')  # cut short by a crash or an editor
    r = runner.invoke(app, ["bench", "--markdown", str(tmp_path / "B.md"), "--results", str(results)])
    assert r.exit_code == 2 and "results.json: unreadable JSON" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "B.md").exists()
