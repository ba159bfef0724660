"""schemathesis against the app, from its own OpenAPI document: every operation, a
fixed seed, at least 1,000 requests in all; no answer may be a 5xx, and every
answer must match the document where it describes one."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

EXAMPLES = 200
"""Most cases per operation; the 6 operations with inputs reach it, the 3 without
have one case each: more than 1,000 requests in all."""


def test_no_request_gets_a_server_error(app):
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    statuses: list[int] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            response = case.call()
            statuses.append(response.status_code)
            case.validate_response(response, checks=(not_a_server_error, response_schema_conformance))

        check()
    print(f"schemathesis: {len(statuses)} requests over {len(operations)} operations, statuses {sorted(set(statuses))}")
    assert len(operations) == 9
    assert len(statuses) >= 1000 and max(statuses) < 500, (len(statuses), max(statuses))
