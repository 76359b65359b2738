"""orjson where it answers as the standard library does; the standard library everywhere else."""

from __future__ import annotations

import json
import math

import pytest
from flask import Flask

from churn.api import jsonio


@pytest.mark.parametrize(
    "text",
    [
        b'{"tenure": 12, "MonthlyCharges": 70.35, "TotalCharges": null, "x": [1, 2.5e-05]}',
        b'{"a": 1, "a": 2}',  # a repeated key: the last one, as json.loads
        '{"name": "Ren\u00e9e \u2603"}'.encode(),
        b"[-0, 0.1, 1e308, 9223372036854775807]",
    ],
)
def test_what_orjson_parses_is_what_json_parses(text: bytes) -> None:
    assert jsonio.loads(text) == json.loads(text)


def test_what_orjson_refuses_is_parsed_or_refused_by_json_as_before() -> None:
    assert math.isnan(jsonio.loads(b'{"tenure": NaN}')["tenure"])  # validation refuses it later
    big = "9" * 400  # past a double's range: orjson refuses it, json reads the integer
    assert jsonio.loads(f'{{"tenure": {big}}}'.encode()) == {"tenure": int(big)}
    # Past 64 bits but within a double's range orjson reads a float; the validator then
    # refuses it for the same field, echoing 1e+25 rather than the digits.
    assert jsonio.loads(b'{"tenure": 10000000000000000000000000}') == {"tenure": 1e25}
    assert jsonio.loads('{"a": 1}'.encode("utf-16")) == {"a": 1}
    with pytest.raises(json.JSONDecodeError) as caught:
        jsonio.loads(b'{"tenure": }')
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(b'{"tenure": }')
    assert str(caught.value) == str(expected.value)  # the same message for the 400 answer
    with pytest.raises(RecursionError):
        jsonio.loads(b"[" * 100_000 + b"]" * 100_000)


def test_jsonify_keeps_the_code_s_key_order_and_parses_back_the_same() -> None:
    app = Flask(__name__)
    app.json = jsonio.FastJSONProvider(app)
    answer = {"model": "v2", "alias": None, "predictions": [{"churn": True, "p": 0.1 + 0.2}]}
    with app.app_context():
        body = app.json.response(answer).get_data()
        assert list(json.loads(body)) == ["model", "alias", "predictions"]
        assert json.loads(body) == answer
        app.json.sort_keys = True  # type: ignore[attr-defined]
        assert list(json.loads(app.json.response(answer).get_data())) == sorted(answer)
        assert app.json.loads(b'{"x": NaN}')["x"] != 0
