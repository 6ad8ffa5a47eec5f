"""The historical data loader behind `./start.sh load-data` and `./start.sh verify-data`.

sources.py (synthetic, CSV, the provider interface) → rows.py (bad-row checks) → payload.py
(indicators, binary COPY encoding, checksums; in worker processes) → copy.py (staging and upserts)
→ runs.py (load_runs bookkeeping, resume) → run.py (the pipeline); verify.py checks the result;
commands.py holds the CLI bodies.
"""
