"""Market data on PostgreSQL: repositories over bars and indicators, and the history port."""
