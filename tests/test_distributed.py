"""torchrun with 2 processes on the CPU (gloo)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from cifarlab import evaluate_run, train
from cifarlab.config import LR_FIND_SETTINGS, make_config
from cifarlab.training import build_model
from cifarlab.rundir import read_metrics

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def torchrun(args: list[str], timeout=240, script=None):
    target = [str(script)] if script else ["-m", "cifarlab"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           *target, *args], capture_output=True, text=True, timeout=timeout, env=env)


def flags(settings: dict) -> list[str]:
    out = []
    for name, value in settings.items():
        flag = "--" + name.replace("_", "-")
        out += [flag] if value is True else [f"--no-{flag[2:]}"] if value is False else [flag, str(value)]
    return out


@pytest.fixture
def settings(cifar_dir):
    # 15 images in global batches of 5: three steps, each split 3 + 2 between the processes, so a share
    # weighted wrongly would count each image as 1/6 or 1/4 of the batch instead of 1/5. GroupNorm, whose
    # statistics do not depend on the batch.
    return {"model": "compact", "norm": "group", "norm_groups": 4, "data_dir": str(cifar_dir), "epochs": 1,
            "limit_train": 15, "batch_size": 5, "lr": 0.02, "precision": "fp32", "device": "cpu",
            "progress": False, "report": False, "augment": "crop,flip,cutout,rotate"}


def test_two_processes_learn_what_one_does_and_write_the_folder_once(settings, tmp_path):
    parent = tmp_path / "runs"
    two = torchrun(["train", *flags({**settings, "out": parent / "two"})])
    assert two.returncode == 0, two.stderr[-3000:]
    assert sorted(p.name for p in parent.iterdir()) == ["two"]
    assert two.stdout.count("test accuracy") == 1 and "x 2 processes" in two.stdout
    torch.set_num_threads(1)
    try:
        one = train(**{**settings, "out": str(tmp_path / "one"), "augment": settings["augment"].split(",")})
    finally:
        torch.set_num_threads(2)
    mine, theirs = load_file(parent / "two" / "model.safetensors"), load_file(tmp_path / "one" / "model.safetensors")
    start = build_model(make_config({**settings, "augment": settings["augment"].split(",")}), 10).state_dict()
    # The processes reduce gradients in another order than one process does (differences near 1e-8), and a
    # ReLU whose input sits that close to zero can switch, so a few weights may differ by far more than
    # rounding. Measured on the CPUs here: the two runs differ by at most 2% of how far training moved the
    # weights; weighting every share equally (a real bug) makes them differ by 22-31%.
    apart = torch.cat([(mine[n].float() - theirs[n].float()).flatten() for n in mine]).norm()
    moved = torch.cat([(theirs[n].float() - start[n].float()).flatten() for n in mine]).norm()
    assert moved > 0 and apart <= 0.1 * moved, (apart.item(), moved.item())
    rows = read_metrics(parent / "two" / "metrics.csv")
    assert len(rows) == 1 and rows[0]["train_loss"] == pytest.approx(one.history["train_loss"].iloc[0], rel=1e-3)
    summary = json.loads((parent / "two" / "summary.json").read_text())
    assert summary["test_images"] == 100 and summary["train_images"] == 15
    # the sharded, gathered evaluation equals one process evaluating the same weights
    assert evaluate_run(parent / "two")["test_accuracy"] == summary["test_accuracy"]


def test_a_checkpoint_of_two_processes_resumes_on_one(settings, tmp_path):
    out = tmp_path / "run"
    assert torchrun(["train", *flags({**settings, "out": out})]).returncode == 0
    result = train(resume=str(out), epochs=2)
    assert result.history["epoch"].tolist() == [1, 2]
    assert [row["epoch"] for row in read_metrics(out / "metrics.csv")] == [1, 2]


def test_lr_auto_runs_the_range_test_once_and_every_process_trains_with_its_answer(settings, tmp_path, capsys,
                                                                                  monkeypatch):
    from cifarlab.cli import main

    lr_settings = {**settings, "lr": "auto", "lr_find_steps": 10, "epochs": 1}
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("LR_FIND_MARKS", str(marks))
    job = torchrun(["train", *flags({**lr_settings, "out": tmp_path / "two"})],
                   script=Path(__file__).parent / "ddp_lr_find_helper.py")
    assert job.returncode == 0, job.stderr[-3000:]
    assert [p.name for p in marks.iterdir()] == ["rank-0"]
    assert job.stdout.count("LR range test: suggested") == 1
    torch.set_num_threads(1)  # as each torchrun process
    try:
        assert main(["lr-find", *flags({k: v for k, v in lr_settings.items() if k in LR_FIND_SETTINGS}),
                     "--plot", str(tmp_path / "alone.png")]) == 0
    finally:
        torch.set_num_threads(2)  # as conftest sets it for every other test
    suggested = job.stdout.split("suggested max lr ")[1].split()[0]
    assert f"suggested max lr for onecycle {suggested};" in capsys.readouterr().out  # as one process finds
    suggested = float(suggested)
    saved = yaml.safe_load((tmp_path / "two" / "config.yaml").read_text())
    assert saved["lr"] == "auto" and (tmp_path / "two" / "lr_find.png").is_file()
    assert read_metrics(tmp_path / "two" / "metrics.csv")[0]["lr"] == pytest.approx(suggested / 25, rel=1e-3)


def test_precision_auto_is_rank_0s_choice_on_every_process(settings, tmp_path, monkeypatch):
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("PRECISION_MARKS", str(marks))
    job = torchrun(["train", *flags({**settings, "precision": "auto", "out": tmp_path / "two"})],
                   script=Path(__file__).parent / "ddp_precision_helper.py")
    assert job.returncode == 0, job.stderr[-3000:]
    assert {p.name: p.read_text() for p in marks.iterdir()} == {"rank-0": "bf16", "rank-1": "bf16"}
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["precision"] == "bf16"


def test_a_failing_process_ends_the_whole_job(settings, tmp_path):
    start = time.time()
    job = torchrun(["train", *flags({**settings, "out": tmp_path / "run", "epochs": 3})],
                   script=Path(__file__).parent / "ddp_fail_helper.py")
    assert job.returncode != 0
    assert time.time() - start < 200
    assert "injected failure on rank 1" in job.stderr


def test_sync_bn_on_the_cpu_is_refused_clearly(settings, tmp_path, capsys):
    from cifarlab.cli import main

    assert main(["train", *flags({**settings, "out": tmp_path / "run", "sync_bn": True})]) == 2
    assert "sync_bn: SyncBatchNorm runs on CUDA" in capsys.readouterr().err
