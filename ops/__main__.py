"""`python -m ops`: the operator's CLI (what `./start.sh` runs)."""

from ops.cli import main

main()
