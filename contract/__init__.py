"""The API contract both backends implement: wire types, routes, ports, identity, universe."""

API_PREFIX = "/api/v1"
CONTRACT_VERSION = "1.0.0"
