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
