"""--optimizer muon: Muon's steps on the convolution filters, SGD's on the rest, checked against torch's own
SGD and Muon."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cifarlab import make_config
from cifarlab.optim import MuonSGD, create_optimizer, create_schedule, newton_schulz, newton_schulz_dtype


def norm_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 36, 2))


def random_grads(shape, steps: int, seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator) for _ in range(steps)]


def test_the_filters_form_their_own_group_without_weight_decay():
    cfg = make_config({"optimizer": "muon", "lr": 0.1, "norm_lr_scale": 8, "muon_lr_scale": 0.2,
                       "weight_decay": 5e-4})
    model = norm_net()
    optimizer = create_optimizer(model, cfg, torch.device("cpu"))
    weights, norms, filters = optimizer.param_groups
    assert [p for p in weights["params"]] == [model[3].weight] and weights["lr"] == 0.1
    assert {id(p) for p in norms["params"]} == {id(model[1].weight), id(model[1].bias), id(model[3].bias)}
    assert filters["params"] == [model[0].weight] and filters["muon"] and filters["weight_decay"] == 0
    assert filters["lr"] == pytest.approx(0.02) and norms["lr"] == pytest.approx(0.8)
    assert weights["weight_decay"] == 5e-4 and not weights["muon"]


def test_onecycle_keeps_each_groups_share_of_the_lr_and_the_filters_momentum():
    cfg = make_config({"optimizer": "muon", "scheduler": "onecycle", "lr": 0.1, "epochs": 2, "muon_lr_scale": 0.2,
                       "muon_momentum": 0.7})
    model = norm_net()
    optimizer = create_optimizer(model, cfg, torch.device("cpu"))
    schedule = create_schedule(optimizer, cfg, steps_per_epoch=10)
    for _ in range(15):
        model(torch.randn(2, 3, 8, 8)).sum().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.after_batch()
        weights, _, filters = optimizer.param_groups
        assert filters["lr"] == pytest.approx(0.2 * weights["lr"]) and filters["muon_momentum"] == 0.7
    assert weights["momentum"] != 0.9  # the SGD part's momentum swings against the lr


@pytest.mark.parametrize("momentum, nesterov, weight_decay", [(0.9, True, 5e-4), (0.9, False, 0.0), (0.0, False, 1e-2)])
def test_the_parameters_outside_the_filters_take_torch_sgds_steps(momentum, nesterov, weight_decay):
    mine = [nn.Parameter(torch.randn(5, 3)), nn.Parameter(torch.randn(5))]
    theirs = [nn.Parameter(p.detach().clone()) for p in mine]
    ours = MuonSGD([{"params": mine, "weight_decay": weight_decay}], lr=0.1, momentum=momentum, nesterov=nesterov,
                   muon_momentum=0.85)
    reference = torch.optim.SGD(theirs, lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    grads = [random_grads(p.shape, 4, seed=i) for i, p in enumerate(mine)]
    for step in range(4):
        for params in (mine, theirs):
            for i, (p, g) in enumerate(zip(params, grads)):
                # the bias has no gradient at first: its momentum starts a step after the weight's
                p.grad = None if step == 0 and i == 1 else g[step].clone()
        ours.step()
        reference.step()
        for a, b in zip(mine, theirs):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("nesterov", [True, False])
def test_a_filter_moves_as_torch_optim_muon_moves_the_same_weights_read_as_rows(nesterov):
    """torch.optim.Muon keeps no fixed norm, so before each step its copy is set to ours, brought back to norm
    sqrt(out_channels) as ours is; the steps must then agree (its momentum averages where ours sums, which the
    orthogonalisation cancels)."""
    out_channels, lr, momentum = 8, 0.02, 0.85
    filt = nn.Parameter(torch.randn(out_channels, 4, 3, 3, generator=torch.Generator().manual_seed(0)))
    rows = nn.Parameter(filt.detach().reshape(out_channels, -1).clone())
    ours = MuonSGD([{"params": [filt], "muon": True}], lr=lr, momentum=0.9, nesterov=nesterov,
                   muon_momentum=momentum)
    reference = torch.optim.Muon([rows], lr=lr, weight_decay=0.0, momentum=momentum, nesterov=nesterov)
    for grad in random_grads(filt.shape, 4, seed=1):
        with torch.no_grad():
            rows.copy_(filt.reshape(out_channels, -1) * out_channels ** 0.5 / filt.norm())
        start = rows.detach().clone()
        filt.grad, rows.grad = grad.clone(), grad.reshape(out_channels, -1).clone()
        ours.step()
        reference.step()
        our_step, their_step = filt.detach().reshape(out_channels, -1) - start, rows.detach() - start
        # the Newton-Schulz iteration runs in bf16: inputs differing only in scale round differently
        assert (our_step - their_step).norm() < 0.05 * their_step.norm()
        assert their_step.norm() == pytest.approx(lr * out_channels ** 0.5, rel=0.25)  # singular values near 1


@settings(max_examples=25, deadline=None)
@given(weight_scale=st.floats(1e-2, 1e2), grad_scale=st.floats(1e-3, 1e3))
def test_a_filter_step_depends_on_neither_the_filters_scale_nor_the_gradients(weight_scale, grad_scale):
    """A normalisation follows every filter, so its scale carries no meaning: the step must not see it."""
    start = torch.randn(6, 5, 3, 3, generator=torch.Generator().manual_seed(2))
    grads = random_grads(start.shape, 2, seed=3)
    ends = []
    for w, g in ((1.0, 1.0), (weight_scale, grad_scale)):
        filt = nn.Parameter(start * w)
        optimizer = MuonSGD([{"params": [filt], "muon": True}], lr=0.05, momentum=0.9, nesterov=True,
                            muon_momentum=0.85)
        for grad in grads:
            filt.grad = grad * g
            optimizer.step()
        ends.append(filt.detach() / filt.detach().norm())
    moved = (ends[0] - start / start.norm()).norm()
    assert moved > 0.05  # two steps of 0.05 radians
    assert (ends[1] - ends[0]).norm() < 0.05 * moved  # the same steps, up to the bf16 rounding


def test_a_filter_turns_by_about_its_lr_each_step():
    filt = nn.Parameter(torch.randn(16, 8, 3, 3, generator=torch.Generator().manual_seed(4)))
    optimizer = MuonSGD([{"params": [filt], "muon": True}], lr=0.03, momentum=0.9, nesterov=True,
                        muon_momentum=0.0)
    angles = []
    for grad in random_grads(filt.shape, 5, seed=5):
        before = filt.detach().flatten().clone()
        filt.grad = grad
        optimizer.step()
        after = filt.detach().flatten()
        angles.append(torch.arccos(torch.dot(before, after) / (before.norm() * after.norm())).item())
    assert all(0.015 < a < 0.045 for a in angles), angles


def torch_s_newton_schulz(matrix: torch.Tensor) -> torch.Tensor:
    _muon = pytest.importorskip("torch.optim._muon", reason="torch's own Muon came with torch 2.9")
    return _muon._zeropower_via_newtonschulz(matrix, (_muon.DEFAULT_A, _muon.DEFAULT_B, _muon.DEFAULT_C),
                                             _muon.DEFAULT_NS_STEPS, eps=1e-7)


def test_newton_schulz_off_the_cpu_is_torch_s_to_the_bit_in_bf16_and_close_in_fp32():
    generator = torch.Generator().manual_seed(7)
    for shape in ((8, 36), (64, 576), (40, 10)):
        matrix = torch.randn(shape, generator=generator)
        theirs = torch_s_newton_schulz(matrix)
        assert torch.equal(newton_schulz(matrix, torch.bfloat16, spectral=False), theirs)
        in_fp32 = newton_schulz(matrix, torch.float32, spectral=False)
        assert in_fp32.dtype == torch.float32
        assert (in_fp32 - theirs.float()).norm() < 0.02 * theirs.float().norm()
        singular = torch.linalg.svdvals(in_fp32)
        assert singular.min() > 0.3 and singular.max() < 1.3  # pushed towards one


@pytest.mark.parametrize("shape, spread", [((64, 576), 0), ((27, 64), 0), ((256, 128), 0), ((64, 576), 5),
                                           ((128, 1152), 3)])
def test_muon_on_the_cpu_lands_nearer_the_exact_polynomial_than_torch_s_bf16_iteration(shape, spread):
    matrix = spread_matrix(shape, spread)
    exact = reference_newton_schulz(orient(matrix) / matrix.norm())
    ours = orient(newton_schulz(matrix.float(), newton_schulz_dtype(torch.device("cpu"))).double())
    theirs = orient(torch_s_newton_schulz(matrix.float()).double())
    assert ours.shape == exact.shape
    assert (ours - exact).norm() < 0.1 * (theirs - exact).norm()


def test_a_non_finite_update_gives_nan_for_the_divergence_check_not_an_error():
    update = torch.randn(64, 576)
    update[3, 5] = float("inf")
    for dtype in (torch.bfloat16, torch.float32):
        assert newton_schulz(update, dtype).isnan().all()


def test_the_iteration_runs_in_fp32_through_the_eigenvalues_on_any_cpu(monkeypatch):
    from cifarlab import runtime

    matrix = torch.randn(64, 576)
    assert torch.equal(newton_schulz(matrix, torch.float32), newton_schulz(matrix, torch.float32, spectral=True))
    assert not torch.equal(newton_schulz(matrix, torch.float32), newton_schulz(matrix, torch.float32, spectral=False))

    cfg = make_config({"optimizer": "muon"})
    for fast in (True, False):
        monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda fast=fast: fast)
        assert newton_schulz_dtype(torch.device("cpu")) == torch.float32
        assert create_optimizer(norm_net(), cfg, torch.device("cpu")).orthogonal_dtype == torch.float32


def orient(matrix: torch.Tensor) -> torch.Tensor:
    """The matrix on its wide side, as the iteration takes it."""
    return matrix.T if matrix.size(0) > matrix.size(1) else matrix


def reference_newton_schulz(x: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """The iteration written plainly on the matrix itself (x wide, spectral norm at most 1)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x


def spread_matrix(shape: tuple, spread: int) -> torch.Tensor:
    """A random fp64 matrix; with `spread`, its singular values spread evenly over that many decades."""
    generator = torch.Generator().manual_seed(sum(shape) + spread)
    matrix = torch.randn(*shape, generator=generator, dtype=torch.float64)
    if spread:
        u, _, v = torch.linalg.svd(matrix, full_matrices=False)
        matrix = u @ torch.diag(torch.logspace(-spread, 0, min(shape), dtype=torch.float64)) @ v
    return matrix


@pytest.mark.parametrize("shape, spread", [((64, 576), 0), ((32, 96), 0), ((64, 576), 5), ((48, 432), 3)])
def test_the_iteration_through_the_eigenvalues_is_the_iteration_on_the_matrix(shape, spread):
    matrix = spread_matrix(shape, spread)
    expected = reference_newton_schulz(matrix / matrix.norm())
    assert torch.allclose(newton_schulz(matrix, torch.float64, spectral=True), expected, atol=1e-10)
    in_fp32 = newton_schulz(matrix.float(), torch.float32, spectral=True).double()
    # fp32 rounding of G moves its smallest eigenvalues: with five decades of singular values, 1.5e-3
    assert (in_fp32 - expected).norm() / expected.norm() < (2e-3 if spread else 1e-5)
    assert torch.linalg.svdvals(in_fp32).max() < 1.5  # every singular value pushed into (0, 1.5)
