from pathlib import Path

import pytest

from churn_ops import training

from .conftest import FakeSession, SessionError

OWN = "configs/params.yaml:data.source=/nonexistent.csv"


def _workspace(tmp_path: Path) -> Path:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "params.yaml").write_text('data:\n  source: ""\n', encoding="utf-8")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n", encoding="utf-8")
    return tmp_path


def test_a_failed_own_data_run_leaves_params_and_lock_as_they_were(tmp_path: Path) -> None:
    root = _workspace(tmp_path)
    before = {p: (root / p).read_bytes() for p in training.WATCHED}

    def dvc(cmd: tuple[str, ...]) -> str:
        if cmd[:3] == ("dvc", "exp", "run"):
            # What `dvc exp run -S` does before its stage fails: writes the parameter.
            (root / "configs" / "params.yaml").write_text(
                "data:\n  source: /nonexistent.csv\n", encoding="utf-8"
            )
            (root / "dvc.lock").write_text("changed\n", encoding="utf-8")
            raise RuntimeError("Command dvc exp run failed")
        return ""

    session = FakeSession(dvc)
    with pytest.raises(SessionError, match="workspace is as it was"):
        training.train(session, ["-S", OWN], root)
    assert {p: (root / p).read_bytes() for p in training.WATCHED} == before
    assert ("dvc", "checkout", "--quiet", "--force") in session.ran


def test_a_successful_own_data_run_says_what_changed_and_how_to_go_back(tmp_path: Path) -> None:
    root = _workspace(tmp_path)

    def dvc(cmd: tuple[str, ...]) -> str:
        (root / "configs" / "params.yaml").write_text(
            "data:\n  source: /data/telco.csv\n", encoding="utf-8"
        )
        return ""

    session = FakeSession(dvc)
    training.train(session, ["-S", "configs/params.yaml:data.source=/data/telco.csv"], root)
    said = "\n".join(session.logs)
    assert '-  source: ""' in said and "+  source: /data/telco.csv" in said
    assert "git checkout configs/params.yaml dvc.lock" in said


def test_without_changed_parameters_it_is_dvc_repro(tmp_path: Path) -> None:
    session = FakeSession()
    training.train(session, ["--force"], _workspace(tmp_path))
    assert session.ran == [("dvc", "repro", "--force")]
