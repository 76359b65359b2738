"""Explanations: contributions plus the base value are the log-odds, and they are the right ones.

The logistic regression's are checked against the exact linear decomposition computed from
scikit-learn's own transform and coefficients; the trees' against the ``shap`` package's
TreeExplainer (when installed) and against a brute-force Shapley computation on small trees.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from churn.config import ArtifactPaths
from churn.schema import FEATURE_COLUMNS
from churn.serving import explain as explain_module
from churn.serving.encoding import CompiledPreprocessor
from churn.serving.explain import TreeShapExplainer
from churn.serving.prediction import ServingModels
from churn.serving.scorers import TreeEnsembleScorer

N_ROWS = 10_000
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def models(artifact_root: Path) -> ServingModels:
    return ServingModels.load(artifact_root)


@pytest.fixture(scope="module")
def generated(make_records) -> list[dict[str, object]]:
    return make_records(N_ROWS, seed=11, null_total_rate=0.1, unseen_rate=0.03)


@pytest.fixture(scope="module")
def test_split(artifact_root: Path) -> list[dict[str, object]]:
    frame = pd.read_csv(ArtifactPaths(artifact_root).test_csv)
    frame["TotalCharges"] = pd.to_numeric(frame["TotalCharges"], errors="coerce")
    records = frame[list(FEATURE_COLUMNS)].to_dict("records")
    for record in records:
        if math.isnan(record["TotalCharges"]):
            record["TotalCharges"] = None
    return records


def log_odds(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def group_by_column(pre: CompiledPreprocessor, per_feature: np.ndarray) -> np.ndarray:
    """Sum per-output-column values into the 19 input columns (reference, by name)."""
    names = list(pre.numeric_columns)
    for column, categories in zip(pre.categorical_columns, pre.categories, strict=True):
        names += [column] * len(categories)
    out = np.zeros((per_feature.shape[0], len(FEATURE_COLUMNS)))
    for j, name in enumerate(names):
        out[:, FEATURE_COLUMNS.index(name)] += per_feature[:, j]
    return out


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("rows", ["generated", "test_split"])
def test_contributions_plus_base_are_the_log_odds(
    models: ServingModels, version: str, rows: str, request: pytest.FixtureRequest
) -> None:
    records = request.getfixturevalue(rows)
    explanation = models.explain(version, records)
    assert explanation.contributions.shape == (len(records), 19)
    assert explanation.columns == FEATURE_COLUMNS
    expected = log_odds(models.predict_proba(version, records))
    assert np.abs(explanation.log_odds() - expected).max() <= TOLERANCE
    # Not a constant split: the columns vary and several carry weight.
    assert (np.abs(explanation.contributions).max(axis=0) > 1e-3).sum() >= 5


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_one_record_at_a_time_equals_the_batch(
    models: ServingModels, generated: list[dict[str, object]], version: str
) -> None:
    batch = models.explain(version, generated[:50]).contributions
    single = np.vstack([models.explain(version, [r]).contributions for r in generated[:50]])
    assert np.abs(batch - single).max() <= 1e-12


def test_logistic_regression_is_the_exact_linear_decomposition(
    models: ServingModels, artifact_root: Path, generated: list[dict[str, object]]
) -> None:
    preprocessor = joblib.load(ArtifactPaths(artifact_root).preprocessor)
    model = joblib.load(ArtifactPaths(artifact_root).model("v1"))
    frame = pd.DataFrame(generated, columns=list(FEATURE_COLUMNS))
    frame["TotalCharges"] = frame["TotalCharges"].astype("float64")
    dense = preprocessor.transform(frame)
    pre = models._get("v1").scorer.pre  # noqa: SLF001 - the compiled layout, for grouping
    expected = group_by_column(pre, dense * model.coef_[0])
    explanation = models.explain("v1", generated)
    assert explanation.base_value == pytest.approx(float(model.intercept_[0]), abs=1e-12)
    assert np.abs(explanation.contributions - expected).max() <= 1e-9


def test_trees_match_shap_tree_explainer(
    models: ServingModels, artifact_root: Path, test_split: list[dict[str, object]]
) -> None:
    shap = pytest.importorskip("shap")
    model = joblib.load(ArtifactPaths(artifact_root).model("v2"))
    pre = models._get("v2").scorer.pre  # noqa: SLF001
    dense = pre.transform(test_split)
    reference = shap.TreeExplainer(model)  # path-dependent: no background data
    expected = group_by_column(pre, np.asarray(reference.shap_values(dense)))
    explanation = models.explain("v2", test_split)
    assert np.abs(explanation.contributions - expected).max() <= TOLERANCE
    base = float(np.asarray(reference.expected_value).ravel()[0])
    assert explanation.base_value == pytest.approx(base, abs=TOLERANCE)


@pytest.mark.parametrize("table_elements", [0, 2**12, 2**15, explain_module._TABLE_ELEMENTS])
def test_the_pattern_tables_give_the_values_evaluated_per_record(
    models: ServingModels,
    generated: list[dict[str, object]],
    monkeypatch: pytest.MonkeyPatch,
    table_elements: int,
) -> None:
    """Leaves looked up by pattern give what the same leaves evaluated per record give.

    With no room for tables every size of path is a block evaluated per record; with room,
    the narrowest paths' leaves are one padded block looked up, the wider ones evaluated.
    """
    scorer = models._get("v2").scorer  # noqa: SLF001
    monkeypatch.setattr(explain_module, "_TABLE_ELEMENTS", 0)
    evaluated = TreeShapExplainer(scorer)
    widths = [b.feature.shape[0] for b in evaluated._blocks]  # noqa: SLF001
    assert widths == sorted(set(widths)) and len(widths) >= 3
    assert all(b.table is None for b in evaluated._blocks)  # noqa: SLF001
    monkeypatch.setattr(explain_module, "_TABLE_ELEMENTS", table_elements)
    tabled = TreeShapExplainer(scorer)
    blocks = tabled._blocks  # noqa: SLF001
    if table_elements:
        assert blocks[0].table is not None
        assert len(blocks) < len(widths)  # the narrowest sizes merged into one block
        assert blocks[0].feature.shape[0] >= (3 if table_elements >= 2**15 else 2)
    records = generated[:200]
    want = evaluated.contributions(records)
    assert np.abs(tabled.contributions(records) - want).max() <= 1e-12
    assert tabled.base_value == evaluated.base_value


def _path_dependent_value(trees: list[np.ndarray], baseline: float, x: np.ndarray, known) -> float:
    """TreeSHAP's value function, by recursion: unknown features follow both children by cover."""

    def walk(nodes: np.ndarray, i: int) -> float:
        node = nodes[i]
        if node["is_leaf"]:
            return float(node["value"])
        left, right = int(node["left"]), int(node["right"])
        feature = int(node["feature_idx"])
        if feature in known:
            return walk(nodes, left if x[feature] <= node["num_threshold"] else right)
        cover = float(node["count"])
        return (
            float(nodes[left]["count"]) * walk(nodes, left)
            + float(nodes[right]["count"]) * walk(nodes, right)
        ) / cover

    return baseline + sum(walk(nodes, 0) for nodes in trees)


def test_trees_match_brute_force_shapley_on_small_trees(
    artifact_root: Path, models: ServingModels, generated: list[dict[str, object]]
) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    pre = models._get("v2").scorer.pre  # noqa: SLF001
    train = pre.transform(generated[:2000])
    labels = (np.arange(2000) % 3 == 0).astype(int) ^ (train[:, 1] > 0.3).astype(int)
    small = HistGradientBoostingClassifier(
        max_iter=4, max_leaf_nodes=5, early_stopping=False, random_state=0
    ).fit(train, labels)
    trees = [iteration[0].nodes for iteration in small._predictors]
    baseline = float(np.asarray(small._baseline_prediction).ravel()[0])
    explainer = TreeShapExplainer(TreeEnsembleScorer(trees, baseline, pre, positive_column=1))
    players = sorted({int(f) for t in trees for f in t[t["is_leaf"] == 0]["feature_idx"]})
    assert 2 <= len(players) <= 12
    records = generated[2000:2010]
    got = explainer.contributions(records)
    for x, row in zip(pre.transform(records), got, strict=True):
        m = len(players)
        phi = np.zeros(pre.n_features)
        for i in players:
            others = [p for p in players if p != i]
            for k in range(m):
                weight = math.factorial(k) * math.factorial(m - k - 1) / math.factorial(m)
                for subset in itertools.combinations(others, k):
                    with_i = _path_dependent_value(trees, baseline, x, {*subset, i})
                    without = _path_dependent_value(trees, baseline, x, set(subset))
                    phi[i] += weight * (with_i - without)
        assert np.abs(group_by_column(pre, phi[None, :])[0] - row).max() <= 1e-9


def test_a_tree_model_file_without_node_counts_is_served_unexplained(artifact_root: Path) -> None:
    import json

    from churn.serving.compiled import load_compiled
    from churn.serving.explain import explainer_for
    from churn.serving.prediction import ExplanationUnavailableError

    document = json.loads(ArtifactPaths(artifact_root).compiled("v2").read_text())
    assert all("count" in tree for tree in document["model"]["trees"])
    for tree in document["model"]["trees"]:
        del tree["count"]
    scorer = load_compiled(json.dumps(document).encode(), "no-counts")
    assert explainer_for(scorer) is None
    assert issubclass(ExplanationUnavailableError, LookupError)
