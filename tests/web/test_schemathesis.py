"""schemathesis against the running server (gunicorn, fixture ``live_server``), with
the OpenAPI document it serves: every operation, a fixed seed, at least 1,000
requests over HTTP in all; no answer may be a 5xx, and every answer must match the
document where it describes one."""

from __future__ import annotations

import time

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

EXAMPLES = 200
"""Most cases per operation; the 6 operations with inputs reach it, the 3 without
have one case each: more than 1,000 requests in all."""

SECONDS = 60
"""The whole run's bound (about 15 s on 2 shared cores)."""


def test_no_request_to_the_live_server_gets_a_server_error(live_server):
    base, _, _ = live_server
    schema = schemathesis.openapi.from_url(base + "/api/openapi.json")
    statuses: list[int] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    started = time.monotonic()
    with requests.Session() as session:
        for operation in operations:
            # derandomize: hypothesis draws from a fixed seed, so every run sends the same requests
            @given(case=operation.as_strategy())
            @settings(
                max_examples=EXAMPLES,
                derandomize=True,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
            )
            def check(case):
                response = case.call(session=session, timeout=10)
                statuses.append(response.status_code)
                case.validate_response(response, checks=(not_a_server_error, response_schema_conformance))

            check()
    elapsed = time.monotonic() - started
    print(
        f"schemathesis: {len(statuses)} requests over {len(operations)} operations in {elapsed:.1f}s, "
        f"statuses {sorted(set(statuses))}"
    )
    assert len(operations) == 9
    assert len(statuses) >= 1000 and max(statuses) < 500, (len(statuses), max(statuses))
    assert elapsed < SECONDS
