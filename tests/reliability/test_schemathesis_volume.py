"""Schemathesis at volume against both backends as real servers (prod with two workers, writes
allowed: its database is this session's own): positive and negative cases of every operation of
contract/openapi.json, and 0 server errors, 0 answers outside the document.

CI runs FUZZ_EXAMPLES (default 12) examples per operation and mode, about 580 requests per
backend. The full drill, 10,000+ requests per backend, is the same test with more examples:

    FUZZ_EXAMPLES=240 .venv/bin/python -m pytest tests/reliability/test_schemathesis_volume.py

or, against running servers, `./start.sh contract --target mock --no-suite --examples 240` (and
`--target prod`, reads only unless --allow-writes on a scratch database)."""

from __future__ import annotations

import os
import time

import pytest

from ops.verify import CHECK_NAMES, Target, fuzz
from tests.backend.processes import DEMO_PASSWORD, SECRET_KEY
from tests.security.servers import Server

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
SEED = 7


@pytest.mark.timeout(3600)
def test_generated_requests_find_no_server_error(backend: Server) -> None:
    target = Target(
        name=backend.name,
        url=backend.url,
        backend="mock" if backend.name == "mock" else "production",
        writes=True,
        policy="writes allowed (the drills' own database)",
        secret_key=SECRET_KEY,
        demo_password=DEMO_PASSWORD,
    )
    started = time.monotonic()
    report = fuzz([target], EXAMPLES, SEED)
    took = time.monotonic() - started
    sent = report.cases[backend.name]
    print(
        f"\nschemathesis {backend.name}: {sent} requests in {took:.1f} s "
        f"({sent / took:.0f}/s), {len(report.operations)} operations, "
        f"{EXAMPLES} examples per operation and mode, seed {SEED}"
    )
    found = [
        f"{check}: {failure.operation} {failure.title} (status {failure.status})\n"
        f"    {failure.request}\n    {failure.message[:300]}"
        for check in CHECK_NAMES
        for failure in report.checks[backend.name][check].failures.values()
    ]
    assert not found, f"{len(found)} findings on {backend.name}:\n" + "\n".join(found[:20])
    assert sent >= 40 * EXAMPLES, f"only {sent} requests were sent"
    assert len(report.operations) >= 25, report.left_out
    assert backend.healthy()
