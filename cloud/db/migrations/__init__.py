"""Alembic migrations of the cloud database (a package, so that setuptools ships it)."""
