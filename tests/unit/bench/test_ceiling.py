"""The bench's ceiling: the trivial Flask app on stock Waitress answers like the API's /health."""

from __future__ import annotations

import json
import urllib.request

from benchmarks import ceiling, local_server, procstat


def test_the_trivial_app_answers_health_and_stops() -> None:
    with ceiling.serving(local_server.free_port()) as app:
        with urllib.request.urlopen(app.url + "/health", timeout=10) as answer:  # noqa: S310
            assert answer.status == 200
            assert json.loads(answer.read()) == {"status": "ok"}
        assert procstat.cpu_seconds([app.pid]) is not None
        pid = app.pid
    assert procstat.cpu_seconds([pid]) is None  # stopped on leaving the block
