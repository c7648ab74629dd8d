from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cifarlab import make_config
from cifarlab.api import resolve_config
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


@pytest.mark.parametrize("div_factor", [1.0, 5.0, 25.0])
def test_onecycle_starts_at_the_peak_divided_by_its_div_factor(div_factor):
    cfg = make_config({"optimizer": "sgd", "scheduler": "onecycle", "lr": 0.2, "epochs": 2,
                       "onecycle_div_factor": div_factor})
    optimizer = create_optimizer(nn.Linear(4, 2), cfg, torch.device("cpu"))
    create_schedule(optimizer, cfg, steps_per_epoch=10)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.2 / div_factor)


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


@pytest.mark.parametrize("norm_weight_decay", [0.0, 0.1])
def test_norm_weight_decay_shrinks_the_norms_as_sgd_shrinks_decayed_weights(norm_weight_decay):
    cfg = make_config({"optimizer": "sgd", "scheduler": "none", "lr": 0.5, "momentum": 0, "norm_lr_scale": 2,
                       "norm_weight_decay": norm_weight_decay})
    model = norm_net()
    with torch.no_grad():
        model[1].weight.fill_(3.0)
    optimizer = create_optimizer(model, cfg, torch.device("cpu"))
    model[1].weight.grad = torch.zeros_like(model[1].weight)  # only the decay moves it
    optimizer.step()
    assert model[1].weight.detach() == pytest.approx(torch.full_like(model[1].weight, 3.0 * (1 - 1.0 * norm_weight_decay)))


def test_the_lr_range_test_sets_each_group_its_scaled_lr():
    optimizer = create_optimizer(norm_net(), make_config({"optimizer": "sgd", "norm_lr_scale": 0.5}), torch.device("cpu"))
    set_lr(optimizer, 0.2)
    assert [group["lr"] for group in optimizer.param_groups] == [0.2, 0.1]


ANCHOR = Path(__file__).resolve().parents[1] / "benchmarks" / "airbench_resnet18.yaml"


def test_the_anchor_config_states_its_whole_recipe():
    import yaml

    from cifarlab.config import RECIPE_SETTINGS

    assert set(RECIPE_SETTINGS) <= set(yaml.safe_load(ANCHOR.read_text()))


def test_the_anchor_config_takes_the_published_baselines_sgd_steps():
    """benchmarks/airbench_resnet18.yaml claims its mean-loss lr and weight decay take the same steps as the
    published script's summed loss with lr 0.2 / batch and weight decay 5e-4 x batch, norms decayed too."""
    cfg = make_config({**resolve_config(ANCHOR).to_dict(), "scheduler": "none"})
    torch.manual_seed(0)
    ours, theirs = norm_net(), norm_net()
    theirs.load_state_dict(ours.state_dict())
    optimizer = create_optimizer(ours, cfg, torch.device("cpu"))
    batch = 8
    reference = torch.optim.SGD(theirs.parameters(), lr=0.2 / batch, momentum=0.9, nesterov=True,
                                weight_decay=5e-4 * batch)
    generator = torch.Generator().manual_seed(1)
    for _ in range(3):
        images, labels = torch.randn(batch, 3, 8, 8, generator=generator), torch.randint(0, 2, (batch,), generator=generator)
        for model, opt, reduction in ((ours, optimizer, "mean"), (theirs, reference, "sum")):
            opt.zero_grad()
            nn.functional.cross_entropy(model(images), labels, reduction=reduction).backward()
            opt.step()
    for mine, published in zip(ours.parameters(), theirs.parameters()):
        assert torch.allclose(mine, published, rtol=1e-5, atol=1e-7)


def test_the_anchor_configs_onecycle_is_the_published_triangle():
    cfg = make_config({**resolve_config(ANCHOR).to_dict(), "epochs": 2})
    steps = 100
    optimizer = create_optimizer(nn.Linear(4, 2), cfg, torch.device("cpu"))
    schedule = create_schedule(optimizer, cfg, steps_per_epoch=steps // 2)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.after_batch()
    triangle = np.interp(np.arange(steps), [0, int(0.2 * steps), steps], [0.2, 1, 0]) * 0.2
    assert np.abs(np.array(lrs) - triangle).max() <= 0.2 * 0.8 / (0.2 * steps) + 1e-9  # one step of the rise
