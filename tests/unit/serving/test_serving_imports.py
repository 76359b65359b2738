"""The serving path runs without scikit-learn, scipy, joblib, pandas and MLflow (the API image
has none of them).

Checked the way the image runs: in a subprocess where those packages cannot be imported at
all. Any import of them by the serving path then fails loudly, and the probabilities must
still come out right.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from churn.serving.prediction import ServingModels

SCRIPT = """
import importlib.abc, json, sys
from pathlib import Path

BLOCKED = ("pandas", "mlflow", "sklearn", "scipy", "joblib")
attempts = []

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            attempts.append(name)
            raise ImportError(f"{name} is not installed in the API image")
        return None

sys.meta_path.insert(0, Block())
from churn.serving.prediction import ServingModels
models = ServingModels.load(Path(sys.argv[1]))
records = json.loads(sys.argv[2])
print(json.dumps({
    "loaded": sorted(m for m in BLOCKED if m in sys.modules),
    "attempts": sorted(set(attempts)),
    "probabilities": {v: models.predict_proba(v, records).tolist() for v in models.versions},
}))
"""


def test_load_and_predict_work_without_sklearn_scipy_joblib_pandas_or_mlflow(
    artifact_root: Path, make_records
) -> None:
    records = make_records(20, seed=11, unseen_rate=0.05)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(artifact_root), json.dumps(records)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["loaded"] == []
    assert result["attempts"] == []  # not even tried
    in_process = ServingModels.load(artifact_root)
    for version, probabilities in result["probabilities"].items():
        expected = in_process.predict_proba(version, records)
        assert np.abs(np.array(probabilities) - expected).max() <= 1e-12
