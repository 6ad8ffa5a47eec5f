"""The production backend: Litestar on PostgreSQL and Redis (filled by later work)."""
