"""The gateway tests' fixtures (defined in tests/gateway/processes.py with their helpers)."""

from tests.gateway.processes import _faults_off, backends, start_gateway

__all__ = ["_faults_off", "backends", "start_gateway"]
