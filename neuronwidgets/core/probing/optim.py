"""Full-batch optimisers on one flat float32 tensor: a small L-BFGS for smooth convex losses, and OWL-QN
and FISTA for smooth + L1 ones (both give exact zeros).

Why not ``torch.optim.LBFGS``: building any ``torch.optim`` optimizer imports ``torch._dynamo`` the first
time (seconds on a laptop), which would dominate training a probe; and a probe's loss is computed with
hand-written gradients anyway. Two-loop recursion (Nocedal & Wright, Algorithm 7.4) with a backtracking
Armijo line search from the unit step, which L-BFGS accepts almost always.
"""

from __future__ import annotations

import math
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


def fista(
    fun: Callable[[torch.Tensor], tuple[float, torch.Tensor]],
    prox: Callable[[torch.Tensor, float], torch.Tensor],
    penalty: Callable[[torch.Tensor], float],
    x0: torch.Tensor,
    *,
    max_iter: int = 500,
    tol_grad: float = 1e-5,
    tol_change: float = 1e-10,
    callback: Callable[[int, float], None] | None = None,
) -> LbfgsResult:
    """Minimise ``f(x) + g(x)``: ``fun`` gives ``f`` (smooth) and its gradient, ``prox(v, t)`` solves
    ``argmin_u g(u) + ‖u − v‖² / (2t)`` and ``penalty(x)`` is ``g(x)`` (non-smooth, e.g. ``λ‖w‖₁``).

    Accelerated proximal gradient (FISTA, Beck & Teboulle 2009) with backtracking on the step (the
    Lipschitz estimate only grows, so the iterates are deterministic) and the gradient restart of
    O'Donoghue & Candès (2015), which keeps the momentum from overshooting on ill-conditioned problems.
    Iterates come out of ``prox``, so its exact zeros (soft-thresholding) are kept. Stops when the
    gradient mapping ``L·(y − x⁺)`` is below ``tol_grad`` in every coordinate (the optimality condition
    of the composite problem) or the objective stops changing. ``loss`` is ``f + g``.
    """
    x = prox(x0.clone(), 0.0)
    y = x.clone()
    fy, gy = fun(y)
    evals = 1
    lip = 1e-3  # grows by doubling to a Lipschitz bound within a few evaluations
    t = 1.0
    obj = fy + penalty(x)
    converged = False
    it = 0
    while it < max_iter:
        it += 1
        for _ in range(60):
            x_new = prox(y - gy / lip, 1.0 / lip)
            d = x_new - y
            fx, gx = fun(x_new)
            evals += 1
            if fx <= fy + float(gy @ d) + 0.5 * lip * float(d @ d) + 1e-7 * max(1.0, abs(fy)):
                break
            lip *= 2.0
        obj_new = fx + penalty(x_new)
        mapping = lip * float(d.abs().max())
        change = abs(obj - obj_new)
        t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        if float((y - x_new) @ (x_new - x)) > 0:  # momentum points uphill: restart it
            t_new = 1.0
            y, fy, gy = x_new.clone(), fx, gx
        else:
            y = x_new + ((t - 1.0) / t_new) * (x_new - x)
            fy, gy = fun(y)
            evals += 1
        x, t, obj = x_new, t_new, obj_new
        if callback is not None:
            callback(it, obj)
        if mapping <= tol_grad or (change <= tol_change * max(1.0, abs(obj)) and it > 1):
            converged = True
            break
    return LbfgsResult(x, obj, it, evals, converged)


def owlqn(
    fun: Callable[[torch.Tensor], tuple[float, torch.Tensor]],
    x0: torch.Tensor,
    l1: torch.Tensor,
    *,
    max_iter: int = 200,
    history: int = 10,
    tol_grad: float = 1e-6,
    tol_change: float = 1e-10,
    callback: Callable[[int, float], None] | None = None,
) -> LbfgsResult:
    """Minimise ``f(x) + Σ l1ᵢ·|xᵢ|`` (``fun`` gives the smooth ``f`` and its gradient; ``l1`` per
    coordinate, 0 for unpenalised ones such as a bias) by OWL-QN (Andrew & Gao 2007, "Scalable training of
    L1-regularized log-linear models"): L-BFGS on the pseudo-gradient, the direction kept in the orthant
    of the current point, and every trial point projected back onto it, so coordinates that cross zero
    become exactly zero. Stops when the pseudo-gradient is below ``tol_grad`` in every coordinate or the
    objective stops changing. ``loss`` is ``f + Σ l1ᵢ|xᵢ|``.
    """
    pen = l1 > 0
    x = x0.clone()
    f, g = fun(x)
    evals = 1

    def objective(x: torch.Tensor, f: float) -> float:
        return f + float((l1 * x.abs()).sum())

    def pseudo(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        right, left = g + l1, g - l1  # one-sided derivatives at 0
        at_zero = torch.where(right < 0, right, torch.where(left > 0, left, torch.zeros_like(g)))
        return torch.where(x != 0, g + l1 * torch.sign(x), at_zero)

    obj = objective(x, f)
    pg = pseudo(x, g)
    s_hist: list[torch.Tensor] = []
    y_hist: list[torch.Tensor] = []
    rho_hist: list[float] = []
    converged = float(pg.abs().max()) <= tol_grad
    it = 0
    while not converged and it < max_iter:
        it += 1
        q = pg.clone()
        alphas = []
        for s, y, rho in zip(reversed(s_hist), reversed(y_hist), reversed(rho_hist)):
            a = rho * float(s @ q)
            alphas.append(a)
            q.add_(y, alpha=-a)
        if y_hist:
            q.mul_(float(s_hist[-1] @ y_hist[-1]) / float(y_hist[-1] @ y_hist[-1]))
        else:
            q.mul_(min(1.0, 1.0 / float(pg.abs().sum())))
        for s, y, rho, a in zip(s_hist, y_hist, rho_hist, reversed(alphas)):
            q.add_(s, alpha=a - rho * float(y @ q))
        d = q.neg_()
        d[d * pg >= 0] = 0.0  # only where it descends along the pseudo-gradient
        if float(d @ pg) >= 0 or not bool(d.any()):  # lost the descent direction: restart
            s_hist.clear()
            y_hist.clear()
            rho_hist.clear()
            d = -pg * min(1.0, 1.0 / float(pg.abs().sum()))
        orthant = torch.where(x != 0, torch.sign(x), torch.sign(-pg))
        t = 1.0
        accepted = False
        for _ in range(30):
            x_new = x + t * d
            x_new[pen & (torch.sign(x_new) != orthant)] = 0.0
            f_new, g_new = fun(x_new)
            evals += 1
            obj_new = objective(x_new, f_new)
            if obj_new <= obj + 1e-4 * float(pg @ (x_new - x)):
                accepted = True
                break
            t *= 0.5
        if not accepted:
            break
        s_vec, y_vec = x_new - x, g_new - g
        sy = float(s_vec @ y_vec)
        if sy > 1e-10:
            if len(s_hist) == history:
                s_hist.pop(0)
                y_hist.pop(0)
                rho_hist.pop(0)
            s_hist.append(s_vec)
            y_hist.append(y_vec)
            rho_hist.append(1.0 / sy)
        change = abs(obj - obj_new)
        x, f, g, obj = x_new, f_new, g_new, obj_new
        pg = pseudo(x, g)
        if callback is not None:
            callback(it, obj)
        converged = float(pg.abs().max()) <= tol_grad or change <= tol_change * max(1.0, abs(obj))
    return LbfgsResult(x, obj, it, evals, converged)
