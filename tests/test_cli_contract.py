"""The command-line contract: help everywhere, clean stdout, exit codes."""

import subprocess
import sys
from pathlib import Path

import pytest

from meca_cli.cli import COMMANDS, app

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_and_is_documented(runner, name):
    result = runner.invoke(app, [name, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output
    assert f"meca {name}" in README.read_text(encoding="utf-8"), f"README does not mention 'meca {name}'"


def test_help_does_not_import_torch():
    code = "import sys; from meca_cli.cli import app; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_version(runner):
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("meca ")


def test_missing_folder_is_a_one_line_usage_error(runner, tmp_path):
    result = runner.invoke(app, ["train", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "error:" in result.stderr and "nope" in result.stderr
    assert not (tmp_path / "o").exists()


def test_single_class_folder_is_refused(runner, tmp_path):
    from tests.conftest import make_image_folder

    make_image_folder(tmp_path / "d", classes=1, per_class=3)
    result = runner.invoke(app, ["score", str(tmp_path / "d"), "--model", str(tmp_path / "m.safetensors")])
    assert result.exit_code == 2
    assert "need at least 2" in result.stderr


def test_pickle_checkpoint_is_refused(runner, tiny_folder, tmp_path):
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"\x80\x04...")
    result = runner.invoke(app, ["score", str(tiny_folder), "--model", str(ckpt), "--out", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert "only .safetensors" in result.stderr
    assert not (tmp_path / "s" / "manifest.json").exists()


def test_bad_option_value_is_a_usage_error(runner, tiny_folder):
    result = runner.invoke(app, ["partition", "x.csv", "--rho0", "1.5"])
    assert result.exit_code == 2


def test_unknown_step_in_from(runner, tiny_folder, tmp_path):
    result = runner.invoke(app, ["sanitize", str(tiny_folder), "--out", str(tmp_path / "r"), "--from", "bogus"])
    assert result.exit_code == 2
    assert "unknown step" in result.stderr


def test_internal_error_exits_3(tmp_path):
    # A crash that is not a user error (here: a broken train step) must exit 3, never 1.
    code = ("import sys, meca_cli.steps as s\n"
            "def boom(*a, **k): raise RuntimeError('boom')\n"
            "s.train = boom\n"
            "from meca_cli.__main__ import main\n"
            f"sys.argv = ['meca', 'train', {str(tmp_path)!r}]\n"
            "main()\n")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 3
    assert "internal error" in proc.stderr
    assert proc.stdout == ""


def test_choice_options_are_checked(runner, tiny_folder, tmp_path):
    r = runner.invoke(app, ["sanitize", str(tiny_folder), "--out", str(tmp_path / "r"), "--unlearn", "sideways"])
    assert r.exit_code == 2 and "'ascent', 'uniform'" in r.output
    r = runner.invoke(app, ["sanitize", str(tiny_folder), "--out", str(tmp_path / "r"), "--split-rule", "vibes"])
    assert r.exit_code == 2 and "'agreement', 'confidence'" in r.output


def test_config_file_sets_defaults_and_flags_win(runner, tmp_path):
    import json as _json
    from pathlib import Path

    from tests.conftest import make_image_folder

    example = Path(__file__).resolve().parents[1] / "examples" / "meca.toml"
    for command in ("sanitize", "train", "evaluate"):  # the shipped example is valid for every table it holds
        assert runner.invoke(app, ["--config", str(example), command, "--help"]).exit_code == 0
    data = tmp_path / "data"
    make_image_folder(data, classes=2, per_class=4)
    config = tmp_path / "meca.toml"
    config.write_text('[train]\nepochs = 2\nimage-size = 16\n"--batch-size" = 4\nformat = "json"\nno-augment = true\n')
    r = runner.invoke(app, ["--config", str(config), "train", str(data), "-o", str(tmp_path / "a")])
    assert r.exit_code == 0, r.stderr
    params = _json.loads((tmp_path / "a" / "manifest.json").read_text())["params"]
    assert (params["epochs"], params["image_size"], params["batch_size"]) == (2, 16, 4)
    assert params["augment"] is False  # the negated spelling of an on/off flag sets it off
    assert _json.loads(r.stdout)["summary"]["epochs"] == 2  # format = "json" applied too
    r = runner.invoke(app, ["--config", str(config), "train", str(data), "-o", str(tmp_path / "b"), "--epochs", "1"])
    assert r.exit_code == 0
    assert _json.loads((tmp_path / "b" / "manifest.json").read_text())["params"]["epochs"] == 1
    for text, message in [('[train]\nepoch = 2\n', "has no option 'epoch'"),
                          ('[trian]\nepochs = 2\n', "[trian] is not a meca command"),
                          ('[train\n', "not valid TOML")]:
        config.write_text(text)
        r = runner.invoke(app, ["--config", str(config), "train", str(data), "-o", str(tmp_path / "c")])
        assert r.exit_code == 2 and message in r.output and "meca.toml" in r.output
        assert not (tmp_path / "c").exists()
