"""--ema-decay: the weight average follows its formula, leaves training alone, is what a run saves and
evaluates, and survives an interrupted run exactly. --lookahead-every: the slow copy follows its
schedule, feeds back into the weights, and is the finished model."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file
from torch import nn

from cifarlab import train
from cifarlab.checkpoint import load_checkpoint
from cifarlab.ema import Lookahead, WeightAverage
from cifarlab.data import load_splits
from cifarlab.evaluate import evaluate
from cifarlab.weights import load_model


def small_net() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


@given(decay=st.floats(0.0, 0.999), updates=st.integers(1, 40), seed=st.integers(0, 2**16))
@settings(max_examples=40, deadline=None)
def test_the_average_follows_the_formula_with_its_warm_up(decay, updates, seed):
    torch.manual_seed(seed)
    net = small_net()
    average = WeightAverage(net, decay)
    expected = {k: v.clone().double() for k, v in net.state_dict().items()}
    for t in range(updates):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
            net[1].running_mean.add_(torch.randn(4))
            net[1].num_batches_tracked += 1
        average.update()
        d = min(decay, (1 + t) / (10 + t))
        for name, value in net.state_dict().items():
            if value.is_floating_point():
                expected[name] = d * expected[name] + (1 - d) * value.double()
            else:
                expected[name] = value.clone()
    for name, value in average.state_dict().items():
        assert torch.allclose(value.double(), expected[name].double(), atol=1e-5), name
    assert average.updates == updates


def test_the_average_starts_at_the_weights_and_is_a_separate_copy():
    net = small_net()
    average = WeightAverage(net, 0.9)
    for mine, theirs in zip(average.module.parameters(), net.parameters()):
        assert torch.equal(mine, theirs) and mine.data_ptr() != theirs.data_ptr()


def test_a_run_with_ema_trains_the_same_weights_and_saves_and_scores_their_average(quick, tmp_path):
    plain = train(**{**quick, "out": str(tmp_path / "plain")})
    averaged = train(**{**quick, "out": str(tmp_path / "ema"), "ema_decay": 0.9})
    plain_state, ema_state = load_checkpoint(plain.run_dir), load_checkpoint(averaged.run_dir)
    trained = {k: v for k, v in ema_state.tensors.items() if k.startswith("model.")}
    for name, value in trained.items():  # the average never feeds back into training
        assert torch.equal(value, plain_state.tensors[name]), name
    saved = load_file(averaged.run_dir / "model.safetensors")
    assert all(torch.equal(saved[k], ema_state.tensors[f"ema.{k}"]) for k in saved)
    assert any(not torch.equal(saved[k], trained[f"model.{k}"]) for k in saved if saved[k].is_floating_point())
    assert ema_state.meta["ema_updates"] == quick["epochs"] * 200 // quick["batch_size"]  # one per step (200 images)
    # the headline number is the saved (averaged) model's accuracy on the whole test split
    model, info = load_model(averaged.run_dir / "model.safetensors")
    splits = load_splits("cifar10", quick["data_dir"])
    scored = evaluate(model, splits.test, mean=splits.mean, std=splits.std, device=torch.device("cpu"),
                      precision="fp32", batch_size=1000, channels_last=True)
    summary = json.loads((averaged.run_dir / "summary.json").read_text())
    assert summary["test_accuracy"] == scored.accuracy


def float_state(net: nn.Module) -> dict:
    return {k: v.clone().double() for k, v in net.state_dict().items() if v.is_floating_point()}


@given(every=st.integers(1, 6), total=st.integers(1, 30), seed=st.integers(0, 2**16))
@settings(max_examples=40, deadline=None)
def test_lookahead_resets_the_weights_onto_its_slow_copy_on_schedule(every, total, seed):
    torch.manual_seed(seed)
    net = small_net()
    lookahead = Lookahead(net, every, total)
    slow = float_state(net)
    for t in range(1, total + 1):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
            net[1].running_mean.add_(torch.randn(4))
            net[1].num_batches_tracked += 1
        moved = float_state(net)
        lookahead.update()
        if t % every == 0 or t == total:
            d = 0.95 ** every * (t / total) ** 3
            slow = {k: d * slow[k] + (1 - d) * moved[k] for k in slow}
            expected = slow
        else:
            expected = moved
        for name, value in float_state(net).items():
            assert torch.allclose(value, expected[name], atol=1e-5), (t, name)
    assert net[1].num_batches_tracked.item() == total  # integer buffers are left alone
    assert all(torch.equal(net.state_dict()[k], v) for k, v in lookahead.state_dict().items())
    assert lookahead.updates == total


def test_a_run_with_lookahead_trains_other_weights_and_saves_the_slow_copy(quick, tmp_path):
    plain = train(**{**quick, "out": str(tmp_path / "plain")})
    pulled = train(**{**quick, "out": str(tmp_path / "lookahead"), "lookahead_every": 2})
    plain_state, state = load_checkpoint(plain.run_dir), load_checkpoint(pulled.run_dir)
    saved = load_file(pulled.run_dir / "model.safetensors")
    floats = [k for k in saved if saved[k].is_floating_point()]
    assert all(torch.equal(saved[k], state.tensors[f"lookahead.{k}"]) for k in floats)
    assert all(torch.equal(saved[k], state.tensors[f"model.{k}"]) for k in saved)  # the last step reset them
    assert any(not torch.equal(saved[k], plain_state.tensors[f"model.{k}"]) for k in floats)
    assert state.meta["lookahead_updates"] == quick["epochs"] * 200 // quick["batch_size"]


@pytest.mark.parametrize("decays", ["abc", "0.99,1.0", "0", "0.99,,0.9"])
def test_ema_choice_refuses_bad_decays_with_one_line_before_training(decays, tmp_path):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "ema_choice.py"
    done = subprocess.run([sys.executable, str(script), "--decays", decays, "--out", str(tmp_path / "e.json"),
                           "--", "--epochs", "1", "--val-split", "10"], capture_output=True, text=True)
    assert done.returncode == 2 and "--decays" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "e.json").exists()
