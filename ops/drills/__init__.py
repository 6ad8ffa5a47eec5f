"""Rehearsed faults on a system of their own: `./start.sh drill NAME` (see catalog.py)."""
