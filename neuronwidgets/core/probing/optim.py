"""A small full-batch L-BFGS for smooth convex losses (probes), on one flat float32 tensor.

Why not ``torch.optim.LBFGS``: building any ``torch.optim`` optimizer imports ``torch._dynamo`` the first
time (seconds on a laptop), which would dominate training a probe; and a probe's loss is computed with
hand-written gradients anyway. Two-loop recursion (Nocedal & Wright, Algorithm 7.4) with a backtracking
Armijo line search from the unit step, which L-BFGS accepts almost always.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class LbfgsResult:
    x: torch.Tensor
    loss: float
    iterations: int
    evaluations: int
    converged: bool


def lbfgs(
    fun: Callable[[torch.Tensor], tuple[float, torch.Tensor]],
    x0: torch.Tensor,
    *,
    max_iter: int = 100,
    history: int = 10,
    tol_grad: float = 1e-6,
    tol_change: float = 1e-9,
    callback: Callable[[int, float], None] | None = None,
) -> LbfgsResult:
    """Minimise ``fun`` (returning the loss and its gradient, same shape as ``x``) from ``x0``."""
    x = x0.clone()
    loss, g = fun(x)
    evals = 1
    s_hist: list[torch.Tensor] = []
    y_hist: list[torch.Tensor] = []
    rho_hist: list[float] = []
    converged = False
    it = 0
    if float(g.abs().max()) <= tol_grad:
        return LbfgsResult(x, loss, 0, evals, True)
    while it < max_iter:
        it += 1
        # two-loop recursion: d = -H g
        q = g.clone()
        alphas = []
        for s, y, rho in zip(reversed(s_hist), reversed(y_hist), reversed(rho_hist)):
            a = rho * float(s @ q)
            alphas.append(a)
            q.add_(y, alpha=-a)
        if y_hist:
            gamma = float(s_hist[-1] @ y_hist[-1]) / float(y_hist[-1] @ y_hist[-1])
            q.mul_(gamma)
        else:
            q.mul_(min(1.0, 1.0 / float(g.abs().sum())))  # a cautious first step, as torch's L-BFGS
        for s, y, rho, a in zip(s_hist, y_hist, rho_hist, reversed(alphas)):
            b = rho * float(y @ q)
            q.add_(s, alpha=a - b)
        d = q.neg_()
        gd = float(g @ d)
        if gd >= 0:  # not a descent direction (numerical trouble): restart from steepest descent
            s_hist.clear()
            y_hist.clear()
            rho_hist.clear()
            d = -g * min(1.0, 1.0 / float(g.abs().sum()))
            gd = float(g @ d)
        t = 1.0
        accepted = False
        for _ in range(20):
            x_new = x + t * d
            loss_new, g_new = fun(x_new)
            evals += 1
            if loss_new <= loss + 1e-4 * t * gd:
                accepted = True
                break
            t *= 0.5
        if not accepted:
            break
        s_vec = x_new - x
        y_vec = g_new - g
        sy = float(s_vec @ y_vec)
        if sy > 1e-10:
            if len(s_hist) == history:
                s_hist.pop(0)
                y_hist.pop(0)
                rho_hist.pop(0)
            s_hist.append(s_vec)
            y_hist.append(y_vec)
            rho_hist.append(1.0 / sy)
        change = abs(loss - loss_new)
        x, loss, g = x_new, loss_new, g_new
        if callback is not None:
            callback(it, loss)
        if float(g.abs().max()) <= tol_grad or change <= tol_change * max(1.0, abs(loss)):
            converged = True
            break
    return LbfgsResult(x, loss, it, evals, converged)
