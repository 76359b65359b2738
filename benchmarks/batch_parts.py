"""Where a 1,000-record batch's server time goes: each step of the API's path, in this process.

The steps are the product's own functions, called as the API calls them for
``POST /predict/batch?model=v2`` with the bench's 1,000 records: parse and check the body in
one pass (`BatchDecoder.parse`), take its columns (`BatchDecoder.columns`), encode the records
with the compiled preprocessor, score them with the compiled model, count them for drift
(`DriftMonitor.observe`), build the answer (`churn.api.predict.batch_answer`) and serialise it
(orjson). Each is timed as the median CPU time of ``repeat`` calls of this process; what is
left of the API's own figure (its latency metric) is reading the request, the request log and
the metrics. The general path, which answers the bodies the decoder leaves (numeric strings,
blanks, errors), is timed too on the same body: parse (`churn.api.jsonio.loads`), then check
(`CustomerValidator.validate_many`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["measure"]


def _cpu_ms(call: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.process_time()
        result = call()
        times.append(time.process_time() - started)
    return round(statistics.median(times) * 1e3, 3), result


def measure(root: Path, body: bytes, version: str = "v2", repeat: int = 30) -> dict[str, Any]:
    """Return the CPU milliseconds of each step for one batch ``body`` (see the module doc)."""
    import orjson

    from churn.api.decoders import BatchDecoder
    from churn.api.jsonio import loads
    from churn.api.predict import batch_answer
    from churn.api.validation import CustomerValidator
    from churn.config import ArtifactPaths
    from churn.drift import DriftMonitor, Reference
    from churn.serving.prediction import ServingModels

    models = ServingModels.load(root)
    scorer = models._get(version).scorer  # noqa: SLF001 - the steps inside predict_proba
    decoder = BatchDecoder(max_batch=10**6)
    steps: dict[str, float] = {}
    steps["parse_and_check"], instances = _cpu_ms(lambda: decoder.parse(body), repeat)
    if instances is None:
        raise ValueError("the bench's batch body is not well typed")
    steps["columns"], (records, ids) = _cpu_ms(lambda: decoder.columns(instances), repeat)
    steps["encode"], _ = _cpu_ms(lambda: scorer.pre.encode(records), repeat)
    both, _ = _cpu_ms(lambda: scorer.proba(records), repeat)
    steps["score"] = round(max(both - steps["encode"], 0.0), 3)
    result = models.predict(version, records, 0.5, None)
    reference = Reference.load(ArtifactPaths(root).model_files.reference(version))
    monitor = DriftMonitor({version: reference}, window_records=10**9)
    scores = result.probabilities.tolist()
    steps["drift"], _ = _cpu_ms(lambda: monitor.observe(version, records, scores), repeat)
    steps["answer"], answer = _cpu_ms(lambda: batch_answer(result, ids, "r"), repeat)
    steps["serialise"], _ = _cpu_ms(lambda: orjson.dumps(answer), repeat)
    general: dict[str, float] = {}
    general["parse"], document = _cpu_ms(lambda: loads(body), repeat)
    validator = CustomerValidator()
    general["validate"], _ = _cpu_ms(lambda: validator.validate_many(document["instances"]), repeat)
    return {
        "records": len(records),
        "body_bytes": len(body),
        "steps_ms": steps,
        "total_ms": round(sum(steps.values()), 3),
        "general_path_ms": general,
        "source": f"this process, median CPU time of {repeat} calls per step",
    }
