"""Database models and sessions (SQLAlchemy 2). SQLite by default, PostgreSQL in production."""

# Every module that declares tables, so that Base.metadata (Alembic, create_all) knows them all.
from db import audit, findings, labels, purge, retrievals, reviews, shadow, webhooks  # noqa: E402,F401
