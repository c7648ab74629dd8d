import json
import os
import pickle
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from cifarlab import train
from cifarlab.checkpoint import CHECKPOINT, load_checkpoint
from cifarlab.cli import main
from cifarlab.data.cifar import read_batch
from cifarlab.data.folder import read_image
from cifarlab.errors import CifarlabError, DataError
from cifarlab.rundir import read_metrics
from helpers import write_cifar10, write_image_folder

HELPER = Path(__file__).parent / "signal_helper.py"
TIMING = ("epoch_seconds", "train_images_per_sec")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_cifar10(tmp_path_factory.mktemp("data"), train_per_class=10, test_per_class=5)


def settings_for(data, out, **extra):
    # dropout and a fused-kernel optimizer with a per-batch schedule: every kind of state must survive
    return {"model": "compact", "data_dir": str(data), "epochs": 3, "batch_size": 20, "lr": 0.05, "dropout": 0.1,
            "precision": "fp32", "device": "cpu", "progress": False, "report": False, "val_split": 10,
            "out": str(out), **extra}


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """The same run, never interrupted."""
    out = tmp_path_factory.mktemp("ref") / "run"
    train(**settings_for(data, out))
    return out


def run_helper(cfg: dict, signal_name: str, step: int, kill_in_checkpoint=False):
    # as many threads as this process uses, whatever OMP_NUM_THREADS says: the runs are compared bit for bit
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    return subprocess.run([sys.executable, str(HELPER), json.dumps(cfg), signal_name, str(step),
                           "1" if kill_in_checkpoint else "0"], capture_output=True, text=True, timeout=300, env=env)


def assert_same_run(run: Path, reference: Path):
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING} for r in rows]  # noqa: E731
    assert strip(read_metrics(run / "metrics.csv")) == strip(read_metrics(reference / "metrics.csv"))
    mine, theirs = load_file(run / "model.safetensors"), load_file(reference / "model.safetensors")
    assert mine.keys() == theirs.keys()
    for name in mine:
        assert torch.equal(mine[name], theirs[name]), name
    summary = lambda p: {k: v for k, v in json.loads((p / "summary.json").read_text()).items()  # noqa: E731
                         if k not in ("train_seconds", "run_dir")}
    assert summary(run) == summary(reference)


# 5 steps an epoch (90 train images in batches of 20, the last of 10), 3 epochs: global steps 1..15
KILL_POINTS = sorted(random.Random(7).sample(range(2, 16), 3))


@pytest.mark.parametrize("global_step", KILL_POINTS)
def test_sigkill_at_a_random_step_then_resume_gives_the_same_run(data, reference, tmp_path, global_step):
    out = tmp_path / "run"
    cfg = settings_for(data, out)
    killed = run_helper(cfg, "SIGKILL", global_step)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (out / "model.safetensors").exists()
    if global_step <= 5:  # killed before the first checkpoint: nothing to resume, so start again
        assert not (out / CHECKPOINT).exists()
        train(**{**cfg, "overwrite": True})
    else:
        train(resume=str(out))
    assert_same_run(out, reference)


@pytest.mark.parametrize("signal_name, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_saves_a_mid_epoch_checkpoint_and_resume_is_exact(data, reference, tmp_path, signal_name, code):
    out = tmp_path / "run"
    stopped = run_helper(settings_for(data, out), signal_name, 8)  # epoch 2, step 3
    assert stopped.returncode == code, stopped.stderr[-2000:]
    assert "Resume with: cifarlab train --resume" in stopped.stderr and "Traceback" not in stopped.stderr
    state = load_checkpoint(out).state
    assert (state.epoch, state.step) == (2, 3)
    assert main(["train", "--resume", str(out)]) == 0
    assert_same_run(out, reference)


def test_the_weight_averages_of_ema_and_lookahead_resume_exactly(data, tmp_path):
    reference = tmp_path / "reference"
    train(**settings_for(data, reference, ema_decay=0.8, lookahead_every=3))
    out = tmp_path / "run"
    stopped = run_helper(settings_for(data, out, ema_decay=0.8, lookahead_every=3), "SIGTERM", 8)  # epoch 2, step 3
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    meta = load_checkpoint(out).meta
    assert meta["ema_updates"] == meta["lookahead_updates"] == 8
    train(resume=str(out))
    assert_same_run(out, reference)


def test_muons_momentum_resumes_exactly(data, tmp_path):
    reference = tmp_path / "reference"
    train(**settings_for(data, reference, optimizer="muon"))
    out = tmp_path / "run"
    stopped = run_helper(settings_for(data, out, optimizer="muon"), "SIGTERM", 8)  # epoch 2, step 3
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    train(resume=str(out))
    assert_same_run(out, reference)


def test_a_resumed_run_counts_the_training_time_before_each_stop(data, tmp_path, monkeypatch):
    """On a clock that moves one second a training step and never otherwise, a run stopped twice in one epoch
    and resumed reports as many seconds as steps: its summary and its stopped epoch's row alike."""
    import types

    import cifarlab.training as train_module

    clock = {"now": 0.0, "steps": 0}
    stops = {7, 9}  # epoch 2 after its steps 2 and 4
    real_make_step = train_module.make_train_step

    def make_step(*args, **kwargs):
        step = real_make_step(*args, **kwargs)

        def timed(*a):
            result = step(*a)
            clock["now"] += 1.0
            clock["steps"] += 1
            if clock["steps"] in stops:
                os.kill(os.getpid(), signal.SIGTERM)
            return result

        return timed

    monkeypatch.setattr(train_module, "make_train_step", make_step)
    monkeypatch.setattr(train_module, "time", types.SimpleNamespace(perf_counter=lambda: clock["now"]))
    out = tmp_path / "run"
    with pytest.raises(CifarlabError, match="SIGTERM"):
        train(**settings_for(data, out))
    with pytest.raises(CifarlabError, match="SIGTERM"):
        train(resume=str(out))
    state = load_checkpoint(out).state
    assert (state.epoch, state.step) == (2, 4)
    train(resume=str(out))
    assert clock["steps"] == 15
    assert json.loads((out / "summary.json").read_text())["train_seconds"] == 15.0
    assert [row["epoch_seconds"] for row in read_metrics(out / "metrics.csv")] == [5.0, 5.0, 5.0]


def test_a_kill_while_writing_a_checkpoint_leaves_the_previous_one(data, reference, tmp_path):
    out = tmp_path / "run"
    killed = run_helper(settings_for(data, out), "SIGKILL", 0, kill_in_checkpoint=True)
    assert killed.returncode == -9
    assert load_checkpoint(out).state.epoch == 2  # the first checkpoint, whole
    train(resume=str(out))
    assert_same_run(out, reference)


def test_resume_can_raise_the_epochs_and_refuses_changes_of_meaning(data, tmp_path, capsys):
    out = tmp_path / "run"
    train(**settings_for(data, out, epochs=1, scheduler="onecycle"))
    assert main(["train", "--resume", str(out), "--model", "resnet18"]) == 2
    assert "model: cannot change when resuming" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--lr", "0.5"]) == 2
    assert main(["train", "--resume", str(out)]) == 2
    assert "already trained 1 epochs" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--epochs", "2"]) == 0
    assert [row["epoch"] for row in read_metrics(out / "metrics.csv")] == [1, 2]


def test_divergence_stops_with_the_step_named_and_keeps_the_last_good_checkpoint(data, tmp_path, monkeypatch,
                                                                                    capsys):
    import cifarlab.training as train_module

    real = train_module.create_loss
    calls = {"n": 0}

    def poisoned(*args):
        loss = real(*args)

        def forward(logits, target):
            calls["n"] += 1
            value = loss(logits, target)
            return value * float("nan") if calls["n"] > 6 else value  # from epoch 2, step 2

        return forward

    monkeypatch.setattr(train_module, "create_loss", poisoned)
    out = tmp_path / "run"
    code = main(["train", *sum([[f"--{k.replace('_', '-')}", str(v)] for k, v in
                                settings_for(data, out).items() if not isinstance(v, bool)], []), "--no-progress"])
    assert code == 3
    err = capsys.readouterr().err
    assert "epoch 2 by step" in err and "learning rate" in err
    assert load_checkpoint(out).state.epoch == 2 and not (out / "model.safetensors").exists()


class Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_malicious_pickle_as_checkpoint_or_model_runs_no_code(data, tmp_path, capsys):
    out = tmp_path / "run"
    train(**settings_for(data, out, epochs=1))
    marker = tmp_path / "pwned"
    (out / CHECKPOINT).write_bytes(pickle.dumps(Evil(marker)))
    (out / "model.safetensors").write_bytes(pickle.dumps(Evil(marker)))
    assert main(["train", "--resume", str(out), "--epochs", "2"]) == 2
    assert "not a readable cifarlab checkpoint" in capsys.readouterr().err
    assert main(["evaluate", str(out)]) == 2
    assert "not a cifarlab model file" in capsys.readouterr().err
    assert not marker.exists()


def corrupt_cifar(root: Path, how: str) -> None:
    folder = root / "cifar-10-batches-py"
    batch = folder / "data_batch_1"
    if how == "truncated":
        batch.write_bytes(batch.read_bytes()[:500])
    elif how == "wrong shape":
        content = pickle.loads(batch.read_bytes())
        content["data"] = content["data"][:, :1000]
        batch.write_bytes(pickle.dumps(content))
    elif how == "labels out of range":
        content = pickle.loads(batch.read_bytes())
        content["labels"][0] = 42
        batch.write_bytes(pickle.dumps(content))
    elif how == "not a pickle":
        batch.write_text("hello")


def corrupt_folder(root: Path, how: str) -> None:
    if how == "no images":
        for p in (root / "train" / "cats").iterdir():
            p.unlink()
    elif how == "no class folders":
        import shutil

        shutil.rmtree(root / "train")
        (root / "train").mkdir()
    elif how == "text file among images":
        (root / "train" / "dogs" / "notes.txt").write_text("not an image")
    elif how == "broken image":
        (root / "train" / "dogs" / "0000.png").write_bytes(b"\x89PNG garbage")
    elif how == "test class unknown to train":
        (root / "test" / "unicorns").mkdir()
        (root / "test" / "cats" / "0000.png").rename(root / "test" / "unicorns" / "0000.png")


@pytest.mark.parametrize("kind, how, message", [
    ("cifar", "truncated", "not a readable CIFAR batch"), ("cifar", "wrong shape", "shape (N, 3072)"),
    ("cifar", "labels out of range", "labels must lie in 0..9"), ("cifar", "not a pickle", "not a readable CIFAR"),
    ("folder", "no images", "holds no images"), ("folder", "no class folders", "no class folders"),
    ("folder", "text file among images", "not images: notes.txt"), ("folder", "broken image", "not a readable image"),
    ("folder", "test class unknown to train", "classes that"),
])
def test_bad_data_exits_2_with_a_message_and_writes_nothing(tmp_path, capsys, kind, how, message):
    if kind == "cifar":
        root = write_cifar10(tmp_path / "data", 2, 2)
        corrupt_cifar(root, how)
        source = ["--data-dir", str(root)]
    else:
        root = write_image_folder(tmp_path / "images")
        corrupt_folder(root, how)
        source = ["--data", str(root)]
    out = tmp_path / "run"
    assert main(["train", "--model", "compact", *source, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("content, message", [
    ("lr: [0.1\n", "not valid YAML"), ("- a\n- b\n", "mapping"), ("lr: 0.1\nwarmup: 3\n", "unknown setting 'warmup'"),
    ("epochs: many\n", "epochs: must be a whole number"), (None, "cannot read"),
])
def test_bad_config_files_exit_2(tmp_path, capsys, cifar_dir, content, message):
    path = tmp_path / "config.yaml"
    if content is None:
        path.mkdir()  # a folder where a file should be: unreadable
    else:
        path.write_text(content)
    out = tmp_path / "run"
    assert main(["train", "--config", str(path), "--data-dir", str(cifar_dir), "--out", str(out)]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_bad_checkpoints_are_refused(data, tmp_path, capsys):
    out, other = tmp_path / "run", tmp_path / "other"
    train(**settings_for(data, out, epochs=1))
    train(**settings_for(data, other, epochs=1, norm="layer"))
    good = (out / CHECKPOINT).read_bytes()
    for content, message in [(good[: len(good) // 2], "truncated"), (b"just text", "not a readable"),
                             ((other / CHECKPOINT).read_bytes(), "another model")]:
        (out / CHECKPOINT).write_bytes(content)
        assert main(["train", "--resume", str(out), "--epochs", "2"]) == 2
        assert message in capsys.readouterr().err
    assert [r["epoch"] for r in read_metrics(out / "metrics.csv")] == [1]


def test_unwritable_or_full_output_is_a_clear_error(cifar_dir, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["train", "--model", "compact", "--data-dir", str(cifar_dir), "--out", str(blocker / "run")]) == 2
    assert "out: cannot write" in capsys.readouterr().err
    import errno

    import cifarlab.rundir as rundir

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rundir, "write_atomic", full)
    assert main(["train", "--model", "compact", "--data-dir", str(cifar_dir), "--out", str(tmp_path / "r"),
                 "--epochs", "1", "--no-progress", "--precision", "fp32"]) == 2
    assert "No space left on device" in capsys.readouterr().err


def test_overwrite_removes_every_file_of_the_old_run(data, tmp_path):
    out = tmp_path / "run"
    train(**settings_for(data, out, epochs=1, report=True, misclassified=3))
    assert (out / "gradcam.png").exists()
    train(**settings_for(data, out, epochs=1, overwrite=True))
    assert not (out / "gradcam.png").exists() and (out / "summary.json").exists()


@given(st.binary(max_size=400))
@example(b"}.")
@settings(max_examples=150, deadline=None)
def test_random_bytes_never_crash_the_readers(tmp_path_factory, blob):
    folder = tmp_path_factory.mktemp("bytes")
    # a batch file must be refused whatever the bytes: b"}." is a valid pickle (an empty dict), yet no batch
    def read_cifar10_batch(path):
        return read_batch(path, "labels", 10)

    for name, reader, error in (("batch", read_cifar10_batch, DataError), ("image.png", read_image, DataError)):
        (folder / name).write_bytes(blob)
        with pytest.raises(error):
            reader(folder / name)
    (folder / CHECKPOINT).write_bytes(blob)
    with pytest.raises(CifarlabError):
        load_checkpoint(folder)
