"""Lab fixtures for the end-to-end tests."""

from tests.lab.fixtures import lab  # noqa: F401
