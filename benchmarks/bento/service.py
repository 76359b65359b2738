r"""The v2 churn model as a BentoML 1.4 Service: the bench's BentoML comparison.

Written the way BentoML's documentation shows a Service: a class decorated with
``@bentoml.service`` that loads its model once in ``__init__``, and an ``@bentoml.api``
method. It serves the same v2 artifacts as the API and `mlflow models serve`: the DVC-tracked
scikit-learn pickles (``data/processed/preprocessor.pkl`` and ``models/model_v2.pkl``), joined
into the Pipeline training logs to MLflow. Its request body is the one `mlflow models serve`
gets, ``{"dataframe_records": [customer, ...]}`` (BentoML's pandas DataFrame input, records
orientation); it answers the churn probability of each record: ``[0.73]``.

It runs in a venv of its own (requirements/bentoml.lock; `benchmarks.bento_serve` makes it)
with BentoML's usage tracking off (``BENTOML_DO_NOT_TRACK=true``), from the project root::

    bentoml serve service:ChurnClassifier --working-dir benchmarks/bento \
        --arg model=models/model_v2.pkl --arg preprocessor=data/processed/preprocessor.pkl \
        --arg workers=1
"""

from __future__ import annotations

from typing import Annotated

import bentoml
import joblib
import pandas as pd
from bentoml.validators import DataframeSchema
from pydantic import BaseModel
from sklearn.pipeline import Pipeline


class Arguments(BaseModel):
    """The Bento arguments (``--arg key=value``): the model files and the worker processes."""

    model: str
    preprocessor: str
    workers: int = 1


ARGS = bentoml.use_arguments(Arguments)


@bentoml.service(workers=ARGS.workers, traffic={"timeout": 30})
class ChurnClassifier:
    """The preprocessing and classifier Pipeline of one model version, loaded once per worker."""

    def __init__(self) -> None:
        """Unpickle the preprocessor and the classifier."""
        self.pipeline = Pipeline(
            [
                ("preprocessor", joblib.load(ARGS.preprocessor)),
                ("classifier", joblib.load(ARGS.model)),
            ]
        )

    @bentoml.api
    def predict(
        self,
        dataframe_records: Annotated[pd.DataFrame, DataframeSchema(orient="records")],
    ) -> list[float]:
        """Return the churn probability of each customer record."""
        return [float(p) for p in self.pipeline.predict_proba(dataframe_records)[:, 1]]
