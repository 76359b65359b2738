"""Names of the model registry shared by training, serving and the operations commands.

Every trained version (``v1``, ``v2``, ...) is registered, besides its own registered model
``churn-model-<version>``, as one version of the registered model `REGISTERED_MODEL`, whose
aliases (`ALIASES`) say what the API serves when ``CHURN_MODEL_SOURCE=registry``.

The registry record of such a model version is its tags:

* `VERSION_TAG`: the project's version name (``v2``);
* `ARTIFACTS_TAG`: JSON ``{kind: {"path": <run artifact path>, "sha256": <hex>}}`` for the
  two files serving loads: ``compiled``, the data-only model file, and `RECORD_KIND`, the
  ``models/model_<version>.json`` record (`churn.model_record`). No pickle is registered.

The registered model's tag `CHAMPION_HISTORY_TAG` holds the registry versions ``champion``
pointed to before each move (JSON list, oldest first), which ``nox -s rollback`` pops.
"""

from __future__ import annotations

REGISTERED_MODEL = "churn-model"
CHAMPION = "champion"
CHALLENGER = "challenger"
ALIASES: tuple[str, ...] = (CHAMPION, CHALLENGER)
VERSION_TAG = "churn.version"
ARTIFACTS_TAG = "churn.artifacts"
CHAMPION_HISTORY_TAG = "churn.champion_history"
#: The kind of the version's record among its registered files.
RECORD_KIND = "record"
#: Run artifact folder holding the files serving downloads.
SERVING_ARTIFACT_DIR = "serving"
#: How many earlier champions the history keeps.
HISTORY_LIMIT = 50
