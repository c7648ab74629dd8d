"""Optimizer and learning-rate schedule factories.

Weight decay applies to the weights of convolutions and linear layers: decaying the scale and shift of
normalisation layers or biases only fights the normalisation, so by default they have none. Those
parameters form a group of their own whose lr is `--lr` times `--norm-lr-scale` and whose weight decay is
`--norm-weight-decay` (set it to --weight-decay to train as a plain torch optimizer does); each group
carries its lr multiplier as "lr_scale", which every schedule and the LR range test honour.

`--optimizer muon` adds a third group, the convolution filters, which take Muon's steps (see `MuonSGD`).

OPTIMIZERS and SCHEDULERS declare every choice: a builder and a line of help each. A new schedule is one
builder here, registered under its name (and its settings in config.py, if it has any).
"""

from __future__ import annotations

import torch
from torch import nn

from . import runtime
from .registry import Registry

OPTIMIZERS = Registry("optimizer")
SCHEDULERS = Registry("scheduler")


def momentum_swing(cfg) -> float:
    """How far onecycle moves SGD's momentum either side of --momentum: not at all without momentum.
    Under --optimizer muon the SGD part swings; the filters keep --muon-momentum."""
    return cfg.onecycle_momentum_swing if cfg.optimizer in ("sgd", "muon") and cfg.momentum > 0 else 0.0


def parameter_groups(model: nn.Module, cfg) -> list[dict]:
    """Weights, then norms and biases, then (muon only) the convolution filters. The first group's lr is
    --lr itself, the one the progress bar and metrics.csv show."""
    params = [p for p in model.parameters() if p.requires_grad]
    muon = cfg.optimizer == "muon"
    filters = [p for p in params if muon and p.ndim == 4]
    decay = [p for p in params if p.ndim > 1 and not (muon and p.ndim == 4)]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay, "lr_scale": 1.0, "lr": cfg.lr},
              {"params": no_decay, "weight_decay": cfg.norm_weight_decay, "lr_scale": cfg.norm_lr_scale,
               "lr": cfg.lr * cfg.norm_lr_scale}]
    if filters:
        groups.append({"params": filters, "weight_decay": 0.0, "lr_scale": cfg.muon_lr_scale,
                       "lr": cfg.lr * cfg.muon_lr_scale, "muon": True})
    return groups


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set `lr` as the base learning rate: each group gets it times its own "lr_scale"."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def create_optimizer(model: nn.Module, cfg, device: torch.device) -> torch.optim.Optimizer:
    return OPTIMIZERS[cfg.optimizer](parameter_groups(model, cfg), cfg, device)


def _fast(device: torch.device) -> dict:
    """torch's fastest implementation of its optimizers: one fused kernel on CUDA, lists of tensors elsewhere."""
    return {"fused": True} if device.type == "cuda" else {"foreach": True}


@OPTIMIZERS.register("sgd", help="SGD with momentum and coupled weight decay")
def sgd(groups, cfg, device):
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                           **_fast(device))


@OPTIMIZERS.register("muon", help="Muon's orthogonalised momentum steps on the convolution filters, kept at a "
                                  "fixed norm without weight decay; SGD on everything else")
def muon(groups, cfg, device):
    return MuonSGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                   muon_momentum=cfg.muon_momentum, orthogonal_dtype=newton_schulz_dtype(device))


@OPTIMIZERS.register("adam", help="Adam, weight decay added to the gradient")
def adam(groups, cfg, device):
    return torch.optim.Adam(groups, lr=cfg.lr, **_fast(device))


@OPTIMIZERS.register("adamw", help="AdamW, decoupled weight decay")
def adamw(groups, cfg, device):
    return torch.optim.AdamW(groups, lr=cfg.lr, **_fast(device))


# Muon's quintic Newton-Schulz iteration (Jordan et al. 2024): the coefficients and number of steps of
# Keller Jordan's reference and of torch.optim.Muon.
NEWTON_SCHULZ_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NEWTON_SCHULZ_STEPS = 5


def newton_schulz(matrix: torch.Tensor, dtype: torch.dtype = torch.bfloat16, steps: int = NEWTON_SCHULZ_STEPS,
                  eps: float = 1e-7, spectral: bool | None = None) -> torch.Tensor:
    """About the nearest matrix to `matrix` (2-D) whose singular values are all one: the iteration pushes
    each towards 1 (it ends between about 0.5 and 1.5, which Muon does not mind), computed in `dtype`.
    Off the CPU (`spectral` None: decided by the matrix's device) these are torch.optim.Muon's operations,
    in bf16 the same result to the bit; on a CPU the same polynomial goes through the eigenvalues of the
    Gram matrix (`newton_schulz_spectral`)."""
    x = matrix.to(dtype)
    tall = x.size(0) > x.size(1)
    if tall:  # iterate on the wide side: the Gram matrix is the smaller one
        x = x.T
    x = x / x.norm().clamp(min=eps)  # spectral norm at most 1
    if matrix.device.type == "cpu" if spectral is None else spectral:
        x = newton_schulz_spectral(x, steps)
    else:
        a, b, c = NEWTON_SCHULZ_COEFFICIENTS
        for _ in range(steps):
            gram = x @ x.T
            x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


def newton_schulz_spectral(x: torch.Tensor, steps: int) -> torch.Tensor:
    """The iteration X <- p(G) X, p(G) = aI + bG + cG^2 with G = X X^T, done through G's eigenvalues.

    Every p(G) is a polynomial of the first G, so all the steps share its eigenvectors V: `steps`
    iterations are X <- V diag(phi) V^T X, where phi follows each eigenvalue through the iteration one
    number at a time (in fp64). One eigendecomposition of the small, symmetric G and two products with the
    long side replace ten such products. On a 2-core CPU, in fp32, ResNet18's 20 filters take a quarter
    less time than torch's iteration in bf16 and land 5e-5 from the exact polynomial where it lands 2e-2
    (benchmarks/muon_orthogonalise.py). On a GPU an eigendecomposition is slow beside matrix products and
    waits on the host, so GPUs keep torch's iteration. A non-finite update gives NaN, which the training
    loop reports as divergence, rather than a failed eigendecomposition."""
    gram = (x @ x.T).to(torch.promote_types(x.dtype, torch.float32))  # eigh takes no bf16
    finite = torch.isfinite(gram).all()  # kept on the device: the training loop reads it only every few steps
    eigenvalues, eigenvectors = torch.linalg.eigh(torch.where(finite, gram, 0.0))
    scale = newton_schulz_scale(eigenvalues, steps)
    transform = (eigenvectors * scale.to(gram.dtype)) @ eigenvectors.T  # p(G) of every step, multiplied out
    return transform.to(x.dtype) @ x * torch.where(finite, 1.0, float("nan")).to(x.dtype)


def newton_schulz_scale(eigenvalues: torch.Tensor, steps: int) -> torch.Tensor:
    """phi: what `steps` iterations multiply each eigendirection of G by, followed one eigenvalue at a
    time in fp64."""
    a, b, c = NEWTON_SCHULZ_COEFFICIENTS
    eigenvalues = eigenvalues.double().clamp(min=0)  # G is positive semi-definite; rounding can dip below 0
    scale = torch.ones_like(eigenvalues)
    for _ in range(steps):
        polynomial = a + eigenvalues * (b + c * eigenvalues)
        scale *= polynomial
        eigenvalues = polynomial * polynomial * eigenvalues
    return scale


def newton_schulz_dtype(device: torch.device) -> torch.dtype:
    """bf16 on a GPU that computes it natively, as Muon is made to run; fp32 elsewhere. A CPU takes the
    spectral route (`newton_schulz_spectral`), where an eigendecomposition in bf16 is not on offer and fp32
    is both faster than the bf16 iteration and near the exact polynomial."""
    if device.type == "cuda" and runtime.cuda_has_native_bf16():
        return torch.bfloat16
    return torch.float32


def orthogonalise(update: torch.Tensor, dtype: torch.dtype = torch.bfloat16,
                  spectral: bool | None = None) -> torch.Tensor:
    """Muon's direction for a filter's update: the filter read as one row per output channel, made
    orthogonal by the Newton-Schulz iteration in `dtype`, in the filter's shape and dtype. Each filter goes
    on its own: stacking those of one shape into a batched product was no faster on a CPU (benchmarks/)."""
    rows = update.reshape(len(update), -1)
    return newton_schulz(rows, dtype, spectral=spectral).view(update.shape).to(update.dtype)


class MuonSGD(torch.optim.Optimizer):
    """Muon (Jordan et al. 2024) on the convolution filters, SGD on every other parameter.

    A filter group ("muon": True) steps along its momentum (--muon-momentum) made orthogonal by
    `orthogonalise`, so every direction of the filter moves by about as much, whatever the gradient's
    scale. Each filter is first brought back to norm sqrt(out_channels) and takes no weight decay: a
    normalisation follows every convolution, so only a filter's direction matters, and at that norm a step
    of lr turns every layer's filter by about lr radians (Keller Jordan's CIFAR-10 speedruns do the same).
    The other groups take torch.optim.SGD's step: coupled weight decay, momentum without dampening.
    """

    def __init__(self, groups, lr: float, momentum: float, nesterov: bool, muon_momentum: float,
                 orthogonal_dtype: torch.dtype = torch.bfloat16, spectral: bool | None = None):
        super().__init__(groups, {"lr": lr, "momentum": momentum, "nesterov": nesterov, "weight_decay": 0.0,
                                  "muon": False, "muon_momentum": muon_momentum})
        self.orthogonal_dtype = orthogonal_dtype  # where the Newton-Schulz iteration runs (newton_schulz_dtype)
        self.spectral = spectral  # its route (newton_schulz): None for the device's own

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [param for param in group["params"] if param.grad is not None]
            if not params:
                continue
            momentum = group["muon_momentum"] if group["muon"] else group["momentum"]
            updates = self._momentum_steps(params, group["weight_decay"], momentum, group["nesterov"])
            if group["muon"]:
                for param in params:
                    param.mul_(len(param) ** 0.5 / param.norm().clamp_min(1e-12))
                updates = [orthogonalise(update, self.orthogonal_dtype, self.spectral) for update in updates]
            for param, update in zip(params, updates):
                param.add_(update, alpha=-group["lr"])
        return loss

    def _momentum_steps(self, params, weight_decay: float, momentum: float, nesterov: bool) -> list:
        """SGD's directions for a group: the gradients (plus weight decay) through the momentum buffers,
        as torch.optim.SGD computes them (no dampening; the buffer starts as the first gradient)."""
        directions = []
        for param in params:
            grad = param.grad if not weight_decay else param.grad.add(param, alpha=weight_decay)
            state = self.state[param]
            if momentum == 0:
                directions.append(grad)
                continue
            if "momentum_buffer" in state:
                state["momentum_buffer"].mul_(momentum).add_(grad)
            else:
                state["momentum_buffer"] = grad.clone()
            buffer = state["momentum_buffer"]
            directions.append(grad.add(buffer, alpha=momentum) if nesterov else buffer)
        return directions


class Schedule:
    """A learning-rate scheduler together with when it is stepped: after every batch or every epoch."""

    def __init__(self, scheduler, per_batch: bool, needs_metric: bool = False):
        self.scheduler = scheduler
        self.per_batch = per_batch
        self.needs_metric = needs_metric

    def after_batch(self) -> None:
        if self.scheduler is None or not self.per_batch:
            return
        # A run resumed with more epochs outlives its schedule: hold the final lr rather than restart.
        # The schedule's last value is that of step end - 1; OneCycleLR extrapolates one step beyond it
        # (below zero when its final lr is tiny).
        end = getattr(self.scheduler, "total_steps", None) or getattr(self.scheduler, "T_max", None)
        if end is not None and self.scheduler.last_epoch >= end - 1:
            return
        self.scheduler.step()

    def after_epoch(self, metric: float | None = None) -> None:
        if self.scheduler is None or self.per_batch:
            return
        if self.needs_metric:
            self.scheduler.step(metric)
        else:
            self.scheduler.step()

    def state_dict(self) -> dict:
        return {} if self.scheduler is None else self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state)


def create_schedule(optimizer, cfg, steps_per_epoch: int) -> Schedule:
    return SCHEDULERS[cfg.scheduler](optimizer, cfg, cfg.epochs * steps_per_epoch)


@SCHEDULERS.register("onecycle", help="Smith's 1cycle: up to --lr and down again, stepped per batch")
def onecycle(optimizer, cfg, total_steps: int) -> Schedule:
    # Each phase needs at least two steps; very short runs (a few batches) get that much room.
    total_steps = max(total_steps, 5)
    pct_start = min(max(cfg.onecycle_pct_start, 2 / total_steps), 1 - 2 / total_steps)
    # SGD's momentum moves against the lr around --momentum (0.95 -> 0.85 -> 0.95 by default).
    swing = momentum_swing(cfg)
    peaks = [cfg.lr * group.get("lr_scale", 1.0) for group in optimizer.param_groups]
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=peaks, total_steps=total_steps, pct_start=pct_start, anneal_strategy=cfg.onecycle_anneal,
        div_factor=cfg.onecycle_div_factor, final_div_factor=1e3, cycle_momentum=swing > 0,
        base_momentum=cfg.momentum - swing, max_momentum=cfg.momentum + swing)
    return Schedule(scheduler, per_batch=True)


@SCHEDULERS.register("cosine", help="cosine decay from --lr to zero, stepped per batch")
def cosine(optimizer, cfg, total_steps: int) -> Schedule:
    return Schedule(torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps), per_batch=True)


@SCHEDULERS.register("step", help="StepLR: times --gamma every --step-size epochs")
def step(optimizer, cfg, total_steps: int) -> Schedule:
    return Schedule(torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma),
                    per_batch=False)


@SCHEDULERS.register("plateau", help="ReduceLROnPlateau: times --gamma when the validation loss, else the "
                                     "training loss, stops falling for --plateau-patience epochs")
def plateau(optimizer, cfg, total_steps: int) -> Schedule:
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=cfg.gamma,
                                                           patience=cfg.plateau_patience)
    return Schedule(scheduler, per_batch=False, needs_metric=True)


@SCHEDULERS.register("none", help="--lr throughout")
def constant(optimizer, cfg, total_steps: int) -> Schedule:
    return Schedule(None, per_batch=False)
