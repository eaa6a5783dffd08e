"""The shell pipeline in examples/ runs the steps one by one on a tiny folder."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_image_folder

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "pipeline.sh"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_pipeline_script(tmp_path):
    data = tmp_path / "data"
    make_image_folder(data, classes=3, per_class=10, poison=3)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "EPOCHS": "2",
           "OMP_NUM_THREADS": "1"}
    if not (bin_dir / "meca").exists():
        pytest.skip("the meca command is not installed in this environment")
    proc = subprocess.run(["bash", str(SCRIPT), str(data), str(tmp_path / "run"), "--image-size", "16",
                           "--device", "cpu"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for step in ("train-poisoned", "score", "partition", "enhance", "split", "train-clean", "relabel"):
        assert (tmp_path / "run" / step / "manifest.json").is_file(), step
    assert "suspected:" in proc.stderr
