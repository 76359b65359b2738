"""The canary split of the container: its weight of distinct customers, sticky per customer.

The suite's API runs with ``CHURN_CANARY_WEIGHT=0.10`` from the start (shadow scoring, left on
by the previous test, does not route). With ``champion`` v2 and ``challenger`` v1 it answers
``LIFECYCLE_CANARY_REQUESTS`` (default 10,000) predictions for as many distinct customer ids,
from 4 keep-alive connections. The challenger's share must be within 2 points of the weight
(a property of the hash, `churn.api.routing.bucket`); every id must meet the version its hash
picks, and a second pass over the first 2,000 ids must meet the same versions again.
tests/unit/api/test_routing.py proves the same of the router in-process.
"""

from __future__ import annotations

import http.client
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

from lifecycle_support import CANARY_WEIGHT, FIGURES, LifecycleStack, customer

from churn.api.routing import bucket

REQUESTS = int(os.environ.get("LIFECYCLE_CANARY_REQUESTS") or 10_000)
CLIENTS = 4
RESENT = 2_000


def _versions(port: int, ids: list[str]) -> dict[str, str]:
    """POST one prediction per id on one keep-alive connection; id -> "status version"."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"}
    seen = {}
    try:
        for customer_id in ids:
            conn.request("POST", "/predict", json.dumps(customer(customer_id)), headers)
            response = conn.getresponse()
            response.read()
            seen[customer_id] = f"{response.status} {response.getheader('X-Model-Version')}"
    finally:
        conn.close()
    return seen


def _all(port: int, ids: list[str]) -> dict[str, str]:
    with ThreadPoolExecutor(CLIENTS) as pool:
        parts = pool.map(
            lambda part: _versions(port, part), [ids[i::CLIENTS] for i in range(CLIENTS)]
        )
    return {k: v for part in parts for k, v in part.items()}


def test_the_challenger_gets_its_weight_of_distinct_customers_and_each_keeps_its_version(
    stack: LifecycleStack,
) -> None:
    stack.serve(champion="v2", challenger="v1")
    ids = [f"{i:05d}-LIFE" for i in range(REQUESTS)]
    started = time.monotonic()
    first = _all(stack.api_port, ids)
    seconds = time.monotonic() - started
    again = _all(stack.api_port, ids[:RESENT])

    assert set(first.values()) <= {"200 v1", "200 v2"}, set(first.values())
    share = sum(v == "200 v1" for v in first.values()) / len(ids)
    expected = {i: "200 v1" if bucket(i) < CANARY_WEIGHT else "200 v2" for i in ids}
    assert first == expected  # each id meets the version its hash picks
    assert again == {i: first[i] for i in ids[:RESENT]}  # and again
    assert abs(share - CANARY_WEIGHT) <= 0.02, share
    FIGURES["canary"] = {
        "weight": CANARY_WEIGHT,
        "distinct_customers": len(ids),
        "challenger_share": round(share, 4),
        "resent_customers_same_version": RESENT,
        "seconds": round(seconds, 1),
        "requests_per_s": round(len(ids) / seconds, 1),
    }
