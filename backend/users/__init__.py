"""Users, passwords and tokens on PostgreSQL."""
