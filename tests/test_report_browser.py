"""The report as a person sees it: headless Chromium loads report.html, decodes every
figure, raises no error, and shows the verdict and the suspects grid on the first screen."""

import json
import re
import shutil
import subprocess

import pytest
from PIL import Image

from meca_cli.cli import app
from tests.conftest import make_image_folder

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (Debian package 'chromium'; "
                                                          ".ci/run installs it)")
FAST = ["--epochs", "2", "--rounds", "2", "--finetune-epochs", "1", "--image-size", "16", "--batch-size", "16"]
WIDTH, HEIGHT = 1280, 900  # a laptop's first screen

# Instrumentation added to a copy of the page: what the browser decoded, where things sit, any error.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.target.src || e)), true);
window.addEventListener('load', () => {
  const place = id => { const el = document.getElementById(id); if (!el) return null;
    const r = el.getBoundingClientRect(); return {top: r.top, bottom: r.bottom, width: r.width}; };
  const images = [...document.images].map(i => ({id: i.id, complete: i.complete, width: i.naturalWidth}));
  const probe = {errors: window.__errors, images: images, verdict: place('verdict'), suspects: place('suspects'),
                 height: window.innerHeight};
  document.body.setAttribute('data-probe', JSON.stringify(probe));
});
</script>"""


def _chromium(profile, *args):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}", "--hide-scrollbars",
             "--run-all-compositor-stages-before-draw", "--virtual-time-budget=10000"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=180)


def test_report_renders_in_a_real_browser(runner, tmp_path):
    data = tmp_path / "data"
    make_image_folder(data, classes=3, per_class=12, poison=4)
    run = tmp_path / "run"
    assert runner.invoke(app, ["sanitize", str(data), "--out", str(run), *FAST]).exit_code == 0
    page = (run / "report.html").read_text(encoding="utf-8")

    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    dom = _chromium(tmp_path / "profile1", "--dump-dom", probed.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'data-probe="([^"]*)"', dom.stdout)
    assert found, "the page never finished loading"
    probe = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert probe["errors"] == []
    figures = {i["id"]: i for i in probe["images"]}
    for name in ("suspects", "cleared", "kl_by_verdict", "suspects_per_class", "rounds"):
        assert figures[name]["complete"] and figures[name]["width"] > 100, name  # decoded by the browser
    # The verdict and the top of the suspects grid are on the first screen, without scrolling.
    assert probe["verdict"]["bottom"] <= probe["height"]
    assert probe["suspects"]["top"] < probe["height"] and probe["suspects"]["width"] > 300

    shot = tmp_path / "report.png"
    r = _chromium(tmp_path / "profile2", f"--screenshot={shot}", (run / "report.html").as_uri())
    assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    assert image.size == (WIDTH, HEIGHT)
    colours = image.getcolors(maxcolors=WIDTH * HEIGHT)
    assert len(colours) > 50  # figures and text drawn, not a blank page
