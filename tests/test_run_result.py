"""benchmarks/run_result.py: a finished run recorded as a result, the best epoch kept apart as what it is."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from run_result import run_result  # noqa: E402

from cifarlab import evaluate_run, train  # noqa: E402


def test_a_run_is_recorded_with_its_recipe_the_final_model_and_the_best_epoch_labelled(quick, capsys):
    result = train(**{**quick, "epochs": 3, "test_every": 1})
    recorded = run_result(quick["out"], quick["data_dir"])
    history = result.history
    assert recorded["summary"]["config"]["epochs"] == 3 and recorded["summary"]["config"]["model"] == "compact"
    assert recorded["summary"]["test_accuracy"] == result.summary["test_accuracy"]
    assert recorded["best_epoch_test_accuracy_chosen_on_test"] == pytest.approx(history["test_acc"].max())
    assert history["test_acc"].iloc[recorded["best_epoch"] - 1] == pytest.approx(history["test_acc"].max())
    assert recorded["test_accuracy_tta"] == evaluate_run(quick["out"], data_dir=quick["data_dir"],
                                                         tta=True)["test_accuracy"]
    assert recorded["seconds_with_evaluation"] == pytest.approx(history["epoch_seconds"].sum(), rel=1e-4)
    assert recorded["seconds_with_evaluation"] > recorded["summary"]["train_seconds"]
    assert "chosen on it, not a result" in capsys.readouterr().out


def test_validation_runs_are_recorded_side_by_side_without_a_test_number(quick, tmp_path, capsys):
    import json
    import shutil

    from validation_runs import main as record_validation_runs

    first, second = str(tmp_path / "first"), str(tmp_path / "second")
    train(**{**quick, "val_split": 100, "test_every": 1, "out": first})
    train(**{**quick, "val_split": 100, "test_every": 1, "out": second, "label_smoothing": 0.1})
    out = tmp_path / "choice.json"
    sys.argv = ["validation_runs.py", first, "--out", str(out)]
    record_validation_runs()
    first_alone = json.loads(out.read_text())["runs"]["first"]
    shutil.rmtree(first)  # a run recorded earlier need not be on disk any more
    sys.argv = ["validation_runs.py", second, "--add-to", str(out)]
    record_validation_runs()
    text = out.read_text()
    assert "test_acc" not in text and "test_loss" not in text
    runs = json.loads(text)["runs"]
    assert list(runs) == ["first", "second"] and runs["first"] == first_alone
    assert all(run["machine"]["threads"] >= 1 for run in runs.values())
    assert runs["first"]["differs_from_first"] == {}
    assert runs["second"]["differs_from_first"] == {"label_smoothing": 0.1}
    epochs = runs["second"]["per_epoch"]
    assert len(epochs) == quick["epochs"]
    assert float(epochs[-1]["val_acc"]) == pytest.approx(runs["second"]["final_val_accuracy"], abs=1e-5)
    assert "second" in capsys.readouterr().out


def test_a_run_without_a_validation_split_is_refused_for_choosing(quick, tmp_path):
    from validation_runs import main as record_validation_runs
    from validation_runs import validation_record

    train(**quick)
    with pytest.raises(SystemExit, match="no validation split"):
        validation_record(quick["out"])
    not_a_record = tmp_path / "other.json"
    not_a_record.write_text('{"benchmark": "train_throughput"}')
    sys.argv = ["validation_runs.py", quick["out"], "--add-to", str(not_a_record)]
    with pytest.raises(SystemExit, match="not a record"):
        record_validation_runs()
