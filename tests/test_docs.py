"""The README's configuration reference is generated from the models and must match them."""

from __future__ import annotations

import os

from clusterdeck.spec import reference
from tests.helpers import ROOT


def test_readme_reference_matches_the_models() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    assert reference.START in text and reference.END in text
    fresh = reference.splice(text)
    if os.environ.get("CLUSTERDECK_UPDATE_GOLDEN") == "1":
        readme.write_text(fresh)
    assert fresh == text, (
        "README configuration reference is stale: run "
        "`python -m clusterdeck.spec.reference --write README.md`"
    )


def test_every_model_field_is_documented() -> None:
    body = reference.render_markdown()
    assert "|  |" not in body, "each field needs a description"
