"""The documentation site builds with warnings as errors, and its API page has every name."""

import html.parser
import os
import subprocess
import sys
from pathlib import Path

import pytest

import keras_agd

pytest.importorskip("mkdocs", reason="the `docs` extra is not installed")
ROOT = Path(__file__).resolve().parents[1]


class _Ids(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids = set()

    def handle_starttag(self, tag, attrs):
        self.ids.update(value for key, value in attrs if key == "id")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-5000:]}"
    return out


def test_every_public_name_is_in_the_rendered_api_reference(site):
    parser = _Ids()
    parser.feed((site / "api" / "index.html").read_text(encoding="utf-8"))
    missing = [name for name in keras_agd.__all__ if f"keras_agd.{name}" not in parser.ids]
    assert not missing, f"add `::: keras_agd.<name>` to docs/api.md for: {missing}"


def test_the_home_page_is_the_readme_and_the_tutorials_are_rendered(site):
    home = " ".join((site / "index.html").read_text(encoding="utf-8").split())
    assert "<strong>annealed gradient descent</strong>" in home
    for name in ("agd_in_ten_minutes", "your_own_data", "layer_adaptive_optimizers"):
        page = (site / "tutorials" / name / "index.html").read_text(encoding="utf-8")
        assert "colab.research.google.com" in page, name
