"""Any bytes in give a model or a SpecError out, never a traceback (property-based)."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusterdeck.spec import check_bytes
from tests.helpers import EXAMPLES

EXAMPLE_BYTES = [p.read_bytes() for p in sorted(EXAMPLES.glob("*.yaml"))]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _never_raises(data: bytes) -> None:
    report = check_bytes(data)
    if report.environment is None or report.errors:
        assert report.errors, "an invalid file must say why"
        for issue in report.errors:
            assert issue.message


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(data: bytes) -> None:
    _never_raises(data)


@FUZZ
@given(st.sampled_from(EXAMPLE_BYTES), st.data())
def test_mutated_examples(example: bytes, data: st.DataObject) -> None:
    """Splice random YAML-ish characters into real examples: deeper paths than random bytes."""
    text = bytearray(example)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(text)))
        junk = data.draw(st.text(alphabet=string.printable + "{}[]:-&*!|>'\"#%@`", max_size=12))
        cut = data.draw(st.integers(0, 8))
        text[pos : pos + cut] = junk.encode()
    _never_raises(bytes(text))


@FUZZ
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=20,
    )
)
def test_arbitrary_structures_under_spec(tree: object) -> None:
    import json

    doc = {
        "apiVersion": "clusterdeck.dev/v1alpha1",
        "kind": "Environment",
        "metadata": {"name": "x"},
        "spec": tree,
    }
    _never_raises(json.dumps(doc).encode())
