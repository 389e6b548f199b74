"""Fixtures of the staff tests: the loyalty tests' migrated database, sessions and clock."""

from tests.cloud.loyalty.conftest import clock, engine, sessions  # noqa: F401
