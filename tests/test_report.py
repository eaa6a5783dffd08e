import base64
import io
import re

from PIL import Image

from meca_cli.cli import app
from tests.conftest import make_image_folder

FAST = ["--epochs", "2", "--rounds", "2", "--finetune-epochs", "1", "--image-size", "16", "--batch-size", "16"]


def test_sanitize_writes_a_self_contained_report(runner, tmp_path):
    data = tmp_path / "data"
    make_image_folder(data, classes=3, per_class=12, poison=4)
    run = tmp_path / "run"
    r = runner.invoke(app, ["sanitize", str(data), "--out", str(run), *FAST])
    assert r.exit_code == 0
    # The summary is for people, on stderr, and points at the report; stdout stays empty.
    assert r.stdout == "" and "dataset verdict" in r.stderr and "report.html" in r.stderr
    csv_out = runner.invoke(app, ["sanitize", str(data), "--out", str(run), "--format", "csv", *FAST]).stdout
    assert csv_out == (run / "verdicts.csv").read_text(encoding="utf-8")
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page  # nothing fetched from a network
    for name in ("suspects", "cleared", "kl_by_verdict", "suspects_per_class", "rounds"):
        match = re.search(rf'id="{name}"[^>]*src="data:image/png;base64,([^"]+)"', page)
        assert match, name
        inline = Image.open(io.BytesIO(base64.b64decode(match.group(1))))
        on_disk = Image.open(run / "report" / f"{name}.png")
        assert inline.size == on_disk.size and inline.size[0] > 100
    assert 'id="verdict"' in page and "Dataset verdict" in page
    # The ground-truth histogram appears when asked for.
    gt = tmp_path / "gt.csv"
    gt.write_text("index,role\n" + "".join(f"{i},{'poison' if i >= 12 and i < 16 else 'clean'}\n" for i in range(40)))
    r = runner.invoke(app, ["report", str(run), str(data), "--ground-truth", str(gt), "--image-size", "16"])
    assert r.exit_code == 0, r.stderr
    assert 'id="kl_by_truth"' in (run / "report.html").read_text(encoding="utf-8")


def test_the_verdict_says_why_it_is_undetermined():
    from meca_cli.report import verdict_reason

    v = {"verdict": "undetermined", "reason": "fit", "suspected_class": None, "fit": 1.0, "max_fit": 0.9,
         "robust_crowding": 164.0, "robust_crowding_class": 0, "robust_crowding_z": 8.9, "robust_threshold": 3.8,
         "error_spread": None, "error_spread_class": None, "spread_threshold": 0.89}
    why = verdict_reason(v, ["airplane", "automobile"])
    assert why.startswith("the step-1 model agrees with 100.0% of the labels (over 90%)")
    assert "(airplane) is 164.00x as likely" in why  # the statistic it did not judge by, still shown
    from meca_cli.report import verdict_summary

    assert verdict_summary(v) == "undetermined (the step-1 model fits 100.0% of the labels)"
    assert verdict_summary({**v, "verdict": "poisoned", "suspected_class_name": "digit1"}) == "poisoned (class digit1)"
