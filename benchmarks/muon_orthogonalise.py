"""Muon's orthogonalisation of ResNet18's 20 convolution filters: cifarlab's way on a CPU (the
Newton-Schulz polynomial through the eigenvalues of each filter's Gram matrix, fp32) against
torch.optim.Muon's iteration (in bf16 where the CPU computes it natively, fp32 elsewhere), timed in turn
in one process; and how far each lands from the exact polynomial (the iteration in fp64). Two variants of
cifarlab's way that were tried and not kept run beside them: the filters of one shape stacked into batched
products, and the products with the long side in bf16 around the fp32 eigendecomposition.

    python benchmarks/muon_orthogonalise.py [--windows 5] [--out muon_orthogonalise.json]

Speed: sets of 20 filters a second (median of the windows after a warm-up one), random updates.
Accuracy: relative distance to the fp64 iteration, the largest over the 20 filters, for random updates and
for updates whose singular values spread evenly over five decades (as momentum buffers can).
"""

from __future__ import annotations

import argparse

import torch
from common import alternate, report

from cifarlab.models import create_model
from cifarlab.optim import (NEWTON_SCHULZ_STEPS, newton_schulz, newton_schulz_dtype, newton_schulz_scale,
                            orthogonalise)
from cifarlab.runtime import cpu_has_fast_bf16


def filter_updates(spread: int, seed: int = 0) -> list[torch.Tensor]:
    """One random update per ResNet18 filter; with `spread`, singular values over that many decades."""
    generator = torch.Generator().manual_seed(seed)
    updates = []
    for filt in (p for p in create_model("resnet18").parameters() if p.ndim == 4):
        rows = torch.randn(len(filt), filt[0].numel(), generator=generator, dtype=torch.float64)
        if spread:
            u, _, v = torch.linalg.svd(rows, full_matrices=False)
            rows = u @ torch.diag(torch.logspace(-spread, 0, min(rows.shape), dtype=torch.float64)) @ v
        updates.append(rows.view(filt.shape))
    return updates


def through_eigenvalues(rows: torch.Tensor, product_dtype: torch.dtype) -> torch.Tensor:
    """cifarlab's CPU route for a stack of (rows x columns) matrices, wide side first, with the two products
    with the long side in `product_dtype` and the eigendecomposition in fp32: the variants below."""
    tall = rows.size(-2) > rows.size(-1)
    x = rows.mT if tall else rows
    x = (x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=1e-7)).to(product_dtype)
    eigenvalues, eigenvectors = torch.linalg.eigh((x @ x.mT).float())
    scale = newton_schulz_scale(eigenvalues, NEWTON_SCHULZ_STEPS)
    transform = (eigenvectors * scale.float().unsqueeze(-2)) @ eigenvectors.mT
    out = (transform.to(product_dtype) @ x).float()
    return out.mT if tall else out


def stacked_by_shape(updates: list[torch.Tensor]) -> list[torch.Tensor]:
    """The variant that stacks the filters of one shape into one batched product each."""
    out = [None] * len(updates)
    shapes = {}
    for index, update in enumerate(updates):
        shapes.setdefault(tuple(update.shape), []).append(index)
    for shape, indices in shapes.items():
        stack = torch.stack([updates[i].reshape(shape[0], -1) for i in indices])
        for i, rows in zip(indices, through_eigenvalues(stack, torch.float32)):
            out[i] = rows.view(shape)
    return out


def bf16_products(updates: list[torch.Tensor]) -> list[torch.Tensor]:
    """The variant with the Gram matrix and the final product in bf16."""
    return [through_eigenvalues(u.reshape(len(u), -1), torch.bfloat16).view(u.shape) for u in updates]


def relative_distance(ours: torch.Tensor, exact: torch.Tensor) -> float:
    return ((ours.double() - exact).norm() / exact.norm()).item()


def largest_error(updates: list[torch.Tensor], dtype: torch.dtype, spectral: bool) -> float:
    errors = []
    for update in updates:
        rows = update.reshape(len(update), -1)
        exact = newton_schulz(rows, torch.float64, spectral=False)
        errors.append(relative_distance(newton_schulz(rows.float(), dtype, spectral=spectral), exact))
    return max(errors)


def largest_variant_error(updates: list[torch.Tensor], variant) -> float:
    exact = [newton_schulz(u.reshape(len(u), -1), torch.float64, spectral=False) for u in updates]
    ours = variant([u.float() for u in updates])
    return max(relative_distance(o.reshape(len(o), -1), e) for o, e in zip(ours, exact))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="sets of 20 filters per window")
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--out")
    args = parser.parse_args()

    ours_dtype = newton_schulz_dtype(torch.device("cpu"))
    torch_dtype = torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    updates = [u.float() for u in filter_updates(0)]
    routes = {f"cifarlab (eigenvalues, {str(ours_dtype)[6:]})": (ours_dtype, True),
              f"torch's iteration ({str(torch_dtype)[6:]})": (torch_dtype, False)}
    contenders = {name: (lambda dtype=dtype, spectral=spectral: [orthogonalise(u, dtype, spectral) for u in updates])
                  for name, (dtype, spectral) in routes.items()}
    variants = {"variant: stacked by shape (fp32)": stacked_by_shape, "variant: bf16 products": bf16_products}
    contenders.update({name: (lambda variant=variant: variant(updates)) for name, variant in variants.items()})
    rates = alternate(contenders, args.steps, args.windows, dict.fromkeys(contenders, 1), unit="sets/s")
    errors = {name: {"random": largest_error(filter_updates(0), *route),
                     "five_decades": largest_error(filter_updates(5), *route)} for name, route in routes.items()}
    errors.update({name: {"random": largest_variant_error(filter_updates(0), variant),
                          "five_decades": largest_variant_error(filter_updates(5), variant)}
                   for name, variant in variants.items()})
    (ours, ours_rate), (theirs, their_rate) = list(rates.items())[:2]
    result = {"benchmark": "muon_orthogonalise", "seconds_per_set": {k: 1 / v for k, v in rates.items()},
              "speedup": ours_rate / their_rate, "largest_relative_error": errors}
    report("Muon's orthogonalisation of ResNet18's 20 filters", [
        *[(name, f"{1 / rate:6.3f} s a set; error {errors[name]['random']:.1e} (random), "
                 f"{errors[name]['five_decades']:.1e} (five decades)") for name, rate in rates.items()],
        ("speed-up", f"{ours_rate / their_rate:6.2f}x")], result, args.out)


if __name__ == "__main__":
    main()
