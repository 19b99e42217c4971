"""Persistence: SQLAlchemy models, engine/session factories and Alembic migrations.

Tables are prefixed ``ahc_`` and versioned in ``ahc_alembic_version`` because the
database is shared with ai-helper-back.
"""
