"""benchmarks/assignment_runs.py: every config run once to its end, taken up again where it stopped."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import assignment_runs  # noqa: E402


@pytest.fixture
def tiny_configs(tmp_path, monkeypatch):
    """A configs/ folder of one short config, and the script pointed at it."""
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "tiny.yaml").write_text("model: compact\nepochs: 2\nbatch_size: 50\nprecision: fp32\ndevice: cpu\n"
                                       "report: false\ntest_every: 1\n")
    monkeypatch.setattr(assignment_runs, "CONFIGS", configs)
    return configs


def run_script(monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", ["assignment_runs.py", *args])
    assignment_runs.main()


def test_a_config_is_trained_to_its_end_and_recorded_once(tmp_path, cifar_dir, tiny_configs, monkeypatch):
    flags = ["--data-dir", str(cifar_dir), "--tag", "here", "--runs-dir", str(tmp_path / "runs"),
             "--out-dir", str(tmp_path)]
    run_script(monkeypatch, *flags)
    result = json.loads((tmp_path / "tiny_here.json").read_text())
    assert result["config"] == "configs/tiny.yaml"
    assert result["summary"]["config"]["model"] == "compact" and len(result["per_epoch"]) == 2
    assert (tmp_path / "runs" / "tiny" / "summary.json").is_file()

    def no_training(argv):
        raise AssertionError(f"trained again: {argv}")

    monkeypatch.setattr(assignment_runs, "cifarlab", no_training)
    run_script(monkeypatch, *flags)  # recorded: nothing to do
    (tmp_path / "tiny_here.json").unlink()
    run_script(monkeypatch, *flags)  # finished: only recorded again
    assert json.loads((tmp_path / "tiny_here.json").read_text())["summary"] == result["summary"]


def test_a_run_with_a_checkpoint_is_resumed_not_started_again(tmp_path, tiny_configs, monkeypatch):
    run_dir = tmp_path / "runs" / "tiny"
    run_dir.mkdir(parents=True)
    (run_dir / "checkpoint.safetensors").write_bytes(b"")
    calls = []
    monkeypatch.setattr(assignment_runs, "cifarlab", lambda argv: calls.append(argv) or 1)
    with pytest.raises(SystemExit) as stopped:
        run_script(monkeypatch, "--data-dir", "data", "--tag", "here", "--runs-dir", str(tmp_path / "runs"))
    assert stopped.value.code == 1  # the training's own exit code
    assert calls == [["train", "--resume", str(run_dir), "--data-dir", "data", "--no-progress"]]


def test_an_unknown_config_is_refused_before_anything_runs(tiny_configs, monkeypatch, capsys):
    monkeypatch.setattr(assignment_runs, "cifarlab", lambda argv: pytest.fail("trained"))
    with pytest.raises(SystemExit) as stopped:
        run_script(monkeypatch, "tiny", "nope", "--data-dir", "data", "--tag", "here")
    assert stopped.value.code == 2 and "nope" in capsys.readouterr().err
