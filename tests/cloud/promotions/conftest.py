"""Fixtures for promotions tests: the loyalty tests' migrated database and clock."""

from tests.cloud.loyalty.conftest import HASH_KEY, clock, engine, new_member, sessions

__all__ = ["HASH_KEY", "clock", "engine", "new_member", "sessions"]
