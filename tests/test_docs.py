from pathlib import Path

import keras_agd

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_every_public_name_is_in_the_api_reference():
    reference = (DOCS / "api.md").read_text()
    missing = [name for name in keras_agd.__all__ if f"`keras_agd.{name}`" not in reference]
    assert not missing, f"add to docs/api.md: {missing}"
