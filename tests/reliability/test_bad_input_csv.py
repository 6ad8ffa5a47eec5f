"""Garbage CSV files to `./start.sh load-data --source csv:FOLDER`: random bytes, other encodings,
NUL bytes, endless fields and quotes, and absurd numbers. Each is
reported with its file (and line, when it has one) and skipped; the good file beside them loads;
no traceback. (Bad rows, truncated and empty files of known layouts: tests/integration.)"""

from __future__ import annotations

import json
import random
from pathlib import Path

from tests.conftest import Env
from tests.integration.conftest import cli, sql

HEADER = "Date,Open,High,Low,Close,Adj Close,Volume\n"
GOOD_ROWS = "2026-11-02,50.0,51.0,49.5,50.5,50.5,3000\n2026-11-03,50.5,51.5,50.0,51.0,51.0,3100\n"


def garbage(folder: Path) -> set[str]:
    """Write the bad files (and one good one) into `folder`; the names of the bad ones."""
    rng = random.Random(7)
    files: dict[str, bytes] = {
        "RANDOM.csv": bytes(rng.randrange(256) for _ in range(65536)),
        "JUNKROWS.csv": HEADER.encode() + bytes(rng.randrange(256) for _ in range(4096)),
        "UTF16.csv": (HEADER + GOOD_ROWS).encode("utf-16"),
        "NULS.csv": (HEADER + "2026-11-02,5\x000.0,51.0,49.5,50.5,50.5,3000\n").encode(),
        "LONGFIELD.csv": (HEADER + "2026-11-02," + "9" * 300_000 + ",1,1,1,1,1\n").encode(),
        "OPENQUOTE.csv": (HEADER + '2026-11-02,"50.0,51.0,49.5,50.5,50.5,3000\n' * 50).encode(),
        "WIDE.csv": (
            ",".join(f"c{n}" for n in range(20000)) + "\n" + "1," * 19999 + "1\n"
        ).encode(),
        "ABSURD.csv": (
            HEADER
            + "2026-11-02,1e999,1e999,1e999,1e999,1e999,1e999\n"
            + "2026-11-03,-inf,nan,0x10,NaN,NaN,-1\n"
            + "9999-99-99,1,1,1,1,1,1\n"
            + "2026-11-04,"
            + "9" * 400
            + ",1,1,1,1,1\n"
        ).encode(),
        "BINARYHEAD.csv": b"\x89PNG\r\n\x1a\n" + bytes(rng.randrange(256) for _ in range(2048)),
    }
    for name, content in files.items():
        (folder / name).write_bytes(content)
    (folder / "GOOD.csv").write_text(HEADER + GOOD_ROWS)
    return set(files)


def test_garbage_files_are_reported_by_name_and_the_good_one_loads(
    loader_env: Env, loader_db: str, tmp_path: Path
) -> None:
    folder = tmp_path / "garbage"
    folder.mkdir()
    bad = garbage(folder)
    result = cli(loader_env, "load-data", "--source", f"csv:{folder}", "--json")
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output[-3000:]
    assert result.returncode == 0, output[-3000:]
    report = json.loads(result.stdout)
    problems = report["problems"]
    assert all(p["file"] and p["kind"] for p in problems), problems
    assert {p["file"] for p in problems} == bad, "every bad file is named, no good one"
    for problem in problems:
        assert problem["line"] is None or problem["line"] >= 1, problem
    loaded = sql(loader_db, "SELECT symbol, count(*) AS n FROM bars GROUP BY symbol")
    counts = {row["symbol"]: row["n"] for row in loaded}
    assert counts.get("GOOD") == 2, counts
    stored = sql(
        loader_db,
        "SELECT count(*) AS n FROM bars WHERE close = 'NaN' OR close > 1e300 OR close <= 0",
    )
    assert stored[0]["n"] == 0, "no absurd number reached the table"

    text = cli(loader_env, "load-data", "--source", f"csv:{folder}")
    assert "Traceback" not in text.stdout + text.stderr
    assert text.returncode == 0, text.stdout[-2000:] + text.stderr[-2000:]
    assert "bad rows and files (skipped)" in text.stdout
