"""Per-user watchlists on PostgreSQL."""
