"""Lab fixtures for these tests."""

from tests.lab.fixtures import lab, lab_hosts  # noqa: F401
