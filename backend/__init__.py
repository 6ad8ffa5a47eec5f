"""The production backend: the contract's routes over PostgreSQL and Redis adapters, with auth,
rate limits, metrics, the live feed, backtest jobs and fault injection."""
