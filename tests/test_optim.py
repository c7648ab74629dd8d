import numpy as np
import pytest
import torch
from torch import nn

from cifarlab import make_config
from cifarlab.errors import ConfigError
from cifarlab.optim import create_optimizer, create_schedule


def lrs_and_momenta(settings: dict, steps: int = 20, schedule_steps: int | None = None):
    """The lr and the momenta after each of `steps` SGD steps under a 2-epoch onecycle schedule."""
    cfg = make_config({"optimizer": "sgd", "scheduler": "onecycle", "lr": 0.1, "epochs": 2, **settings})
    model = nn.Linear(4, 2)
    optimizer = create_optimizer(model, cfg, torch.device("cpu"))
    schedule = create_schedule(optimizer, cfg, steps_per_epoch=(schedule_steps or steps) // 2)
    lrs, momenta = [], []
    for _ in range(steps):
        model(torch.ones(1, 4)).sum().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.after_batch()
        lrs.append(optimizer.param_groups[0]["lr"])
        momenta.append({group["momentum"] for group in optimizer.param_groups})
    return lrs, momenta


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.9])
def test_without_a_swing_onecycle_keeps_the_momentum_the_user_set(momentum):
    lrs, momenta = lrs_and_momenta({"momentum": momentum, "onecycle_momentum_swing": 0})
    assert all(m == {momentum} for m in momenta)
    assert max(lrs) == pytest.approx(0.1, rel=0.05) and 0 < lrs[-1] < 0.1 / 1000


def test_a_schedule_outlived_by_more_steps_holds_its_final_lr():
    lrs, _ = lrs_and_momenta({}, steps=30, schedule_steps=20)
    final = 0.1 / 25 / 1000
    assert lrs[17] > 10 * final and lrs[18:] == pytest.approx([final] * 12)


@pytest.mark.parametrize("momentum, swing", [(0.9, 0.05), (0.5, 0.2)])
def test_the_momentum_swings_around_the_users_against_the_lr(momentum, swing):
    lrs, momenta = lrs_and_momenta({"momentum": momentum, "onecycle_momentum_swing": swing}, steps=40)
    values = [m.pop() for m in momenta]
    peak = lrs.index(max(lrs))
    assert values[peak] == pytest.approx(momentum - swing, abs=0.01)
    assert values[-1] == pytest.approx(momentum + swing, abs=0.01)
    assert min(values) >= momentum - swing - 1e-9 and max(values) <= momentum + swing + 1e-9


def test_momentum_off_stays_off_whatever_the_swing():
    _, momenta = lrs_and_momenta({"momentum": 0.0, "onecycle_momentum_swing": 0.05})
    assert all(m == {0.0} for m in momenta)


@pytest.mark.parametrize("momentum, swing", [(0.99, 0.05), (0.02, 0.05)])
def test_a_swing_leaving_zero_to_one_is_refused_by_name(momentum, swing):
    with pytest.raises(ConfigError, match="onecycle_momentum_swing"):
        make_config({"momentum": momentum, "onecycle_momentum_swing": swing})


@pytest.mark.parametrize("anneal, to_phase", [
    ("linear", lambda u: 1 - u),
    ("cos", lambda u: np.arccos(np.clip(2 * u - 1, -1, 1)) / np.pi),  # u = (1 + cos(pi * phase)) / 2
])
def test_the_onecycle_fall_has_the_shape_asked_for(anneal, to_phase):
    """Mapped back through its own shape, the fall from the peak must advance by equal steps."""
    lrs, _ = lrs_and_momenta({"onecycle_anneal": anneal}, steps=40)
    peak, bottom = lrs.index(max(lrs)), lrs.index(min(lrs))
    fall = np.array(lrs[peak:bottom + 1])
    phase = to_phase((fall - fall[-1]) / (fall[0] - fall[-1]))
    assert len(fall) > 20 and np.diff(phase) == pytest.approx([1 / (len(fall) - 1)] * (len(fall) - 1), abs=1e-6)
