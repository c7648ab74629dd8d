import numpy as np
import pytest
import torch
from torch import nn

from cifarlab import make_config
from cifarlab.errors import ConfigError
from cifarlab.optim import create_optimizer, create_schedule, set_lr


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


def norm_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 36, 2))


@pytest.mark.parametrize("scheduler", ["onecycle", "cosine", "step", "none"])
def test_norm_lr_scale_multiplies_the_lr_of_norms_and_biases_at_every_step(scheduler):
    cfg = make_config({"optimizer": "sgd", "scheduler": scheduler, "lr": 0.1, "epochs": 2, "step_size": 1,
                       "norm_lr_scale": 8})
    model = norm_net()
    optimizer = create_optimizer(model, cfg, torch.device("cpu"))
    weights, norms_and_biases = ({id(p) for p in group["params"]} for group in optimizer.param_groups)
    assert weights == {id(model[0].weight), id(model[3].weight)}
    assert norms_and_biases == {id(model[1].weight), id(model[1].bias), id(model[3].bias)}
    schedule = create_schedule(optimizer, cfg, steps_per_epoch=10)
    base = []
    for step in range(20):
        base.append(optimizer.param_groups[0]["lr"])
        assert optimizer.param_groups[1]["lr"] == pytest.approx(8 * base[-1], rel=1e-9)
        model(torch.ones(2, 3, 8, 8)).sum().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.after_batch()
        if step % 10 == 9:
            schedule.after_epoch()
    assert max(base) == pytest.approx(0.1, rel=0.05)  # --lr stays the lr of the weights


def test_norm_lr_scale_moves_a_norms_shift_that_many_times_as_far():
    moves = []
    for scale in (1, 4):
        cfg = make_config({"optimizer": "sgd", "scheduler": "none", "lr": 0.01, "momentum": 0,
                           "norm_lr_scale": scale})
        torch.manual_seed(0)
        model = norm_net()
        before = model[1].bias.detach().clone(), model[0].weight.detach().clone()
        optimizer = create_optimizer(model, cfg, torch.device("cpu"))
        model(torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1)))[:, 0].sum().backward()
        optimizer.step()
        moves.append([(model[1].bias - before[0]).abs().sum().item(), (model[0].weight - before[1]).abs().sum().item()])
    (shift_1, weight_1), (shift_4, weight_4) = moves
    assert shift_1 > 0 and shift_4 == pytest.approx(4 * shift_1, rel=1e-5)
    assert weight_4 == pytest.approx(weight_1, rel=1e-5)


def test_the_lr_range_test_sets_each_group_its_scaled_lr():
    optimizer = create_optimizer(norm_net(), make_config({"optimizer": "sgd", "norm_lr_scale": 0.5}), torch.device("cpu"))
    set_lr(optimizer, 0.2)
    assert [group["lr"] for group in optimizer.param_groups] == [0.2, 0.1]
