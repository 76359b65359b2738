"""Send generator customers to a running API, plain or shifted, to watch drift monitoring work.

    python -m benchmarks.drift_traffic --url http://127.0.0.1:5000 --records 2000 --shift

Each customer is one ``POST /predict`` (bounded: at most ``--records`` requests, 127.0.0.1 or
the given URL). ``--shift`` moves half the customers' tenure towards 0 and their contract to
month-to-month (the drift the monitoring must flag); without it the traffic is drawn from the
same generator as the training data and must raise no alarm.
"""

from __future__ import annotations

import argparse
import json
import math
import urllib.request
from collections.abc import Iterator

import numpy as np

from churn import dataset
from churn.features import features


def customers(records: int, seed: int, shift: bool) -> Iterator[dict[str, object]]:
    """Yield ``records`` generator customers as JSON-ready dicts, shifted when asked."""
    frame = features(dataset.to_typed(dataset.generate(n_rows=records, seed=seed)))
    moved = np.random.default_rng(seed + 1).random(records) < 0.5 if shift else None
    for index, row in enumerate(frame.to_dict("records")):
        customer = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        if moved is not None and moved[index]:
            customer["tenure"] = round(int(customer["tenure"]) * 0.2)
            customer["Contract"] = "Month-to-month"
            customer["TotalCharges"] = round(customer["tenure"] * customer["MonthlyCharges"], 2)
        total = customer["TotalCharges"]
        if isinstance(total, float) and math.isnan(total):
            customer["TotalCharges"] = None
        yield customer


def send(url: str, records: int, seed: int, shift: bool, model: str | None) -> int:
    """POST each customer to ``url``/predict; return how many were answered 200."""
    target = f"{url.rstrip('/')}/predict" + (f"?model={model}" if model else "")
    answered = 0
    for customer in customers(records, seed, shift):
        request = urllib.request.Request(
            target,
            data=json.dumps(customer).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - given URL
            answered += response.status == 200
    return answered


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and send the traffic."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:5000")
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1001)
    parser.add_argument("--shift", action="store_true")
    parser.add_argument("--model", default=None)
    args = parser.parse_args(argv)
    if not 0 < args.records <= 100_000:
        parser.error("--records must be between 1 and 100000")
    answered = send(args.url, args.records, args.seed, args.shift, args.model)
    kind = "shifted" if args.shift else "plain"
    print(f"{answered} of {args.records} customers answered ({kind})")


if __name__ == "__main__":
    main()
