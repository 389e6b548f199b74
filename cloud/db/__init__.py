"""Cloud database: models, engine, migrations and the idempotent write paths."""

from cloud.db.engine import make_engine, make_session_factory
from cloud.db.migrate import upgrade

__all__ = ["make_engine", "make_session_factory", "upgrade"]
