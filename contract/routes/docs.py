"""OpenAPI documentation of the error answers each route can give."""

from __future__ import annotations

from litestar.openapi.datastructures import ResponseSpec

from contract.types import Error

_DESCRIPTIONS = {
    400: "Body not decodable (not JSON, not UTF-8)",
    401: "No or bad access token (WWW-Authenticate: Bearer)",
    404: "Unknown resource, or another user's",
    409: "Conflict: same id with a different body, or a duplicate email",
    413: "Body over 1 MiB",
    422: "A parameter or body field is invalid; `extra` names each and what is accepted",
    429: "Rate limited; see Retry-After and RateLimit-* headers",
    503: "A required dependency (the database) does not answer",
}


def errors(*codes: int) -> dict[int, ResponseSpec]:
    """ResponseSpecs for the given error codes, all with the contract's error shape."""
    return {
        code: ResponseSpec(
            data_container=Error, description=_DESCRIPTIONS[code], generate_examples=False
        )
        for code in codes
    }


PUBLIC = (422, 429)
PUBLIC_DATA = (404, 422, 429, 503)
AUTHED = (401, 422, 429, 503)
