"""The production schema (SQLAlchemy 2 models; Alembic owns the DDL) and database sessions."""
