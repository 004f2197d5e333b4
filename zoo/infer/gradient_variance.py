r"""Measure the variance of stochastic gradient estimators of a variational objective.

For an estimator :math:`\hat g` of :math:`g = \nabla_\phi \mathcal{L}` (a vector over the
guide's P parameters), S independent draws :math:`\hat g^{(1..S)}` at fixed parameters give

.. math::

    \bar g = \frac1S \sum_s \hat g^{(s)}, \qquad
    \operatorname{tr}\widehat{\operatorname{Var}}[\hat g] = \sum_{p=1}^P
        \frac{1}{S - 1} \sum_s \big(\hat g^{(s)}_p - \bar g_p\big)^2, \qquad
    \mathrm{SNR} = \frac{\lVert \bar g \rVert}{\sqrt{\operatorname{tr}\widehat{\operatorname
        {Var}}[\hat g] / S}} ,

the total variance of one draw, the norm of the mean and the signal-to-noise ratio of the mean
of S draws. Estimators of the same gradient (pathwise [1], score function with and without a
baseline [2, 3], enumeration) differ only in these numbers, so the table
:func:`compare_estimators` prints is the measurement behind "the reparameterization trick has
lower variance". Baselines that learn (a decaying average) are warmed up before measuring.

**References:**

1. *Auto-Encoding Variational Bayes*, D. P. Kingma, M. Welling (2013), arXiv:1312.6114
2. *Black Box Variational Inference*, R. Ranganath, S. Gerrish, D. Blei (2014),
   arXiv:1401.0118
3. *Monte Carlo Gradient Estimation in Machine Learning*, S. Mohamed, M. Rosca, M. Figurnov,
   A. Mnih (2019), arXiv:1906.10652
"""

from __future__ import annotations

import math

import pyro
import torch


def surrogate_loss(objective, model, guide, *args, **kwargs) -> torch.Tensor:
    """A differentiable surrogate whose gradient is the objective's gradient estimate:
    ``differentiable_loss`` where the objective has one, else the surrogate ``TraceGraph_ELBO``
    backpropagates in ``loss_and_grads`` (it has no ``differentiable_loss`` in Pyro 1.9)."""
    if hasattr(objective, "differentiable_loss"):
        return objective.differentiable_loss(model, guide, *args, **kwargs)
    if hasattr(objective, "_loss_and_surrogate_loss"):
        return objective._loss_and_surrogate_loss(model, guide, args, kwargs)[1]
    raise ValueError(f"{type(objective).__name__} exposes no differentiable surrogate loss")


def sample_gradients(objective, model, guide, args=(), kwargs=None, params=None,
                     num_samples: int = 100, warmup: int = 0, seed: int = 0) -> torch.Tensor:
    """``[num_samples, P]`` independent draws of the gradient of ``objective`` (a
    :class:`pyro.infer.ELBO`; see :func:`surrogate_loss`) w.r.t. ``params`` (default: the
    guide's parameters), after ``warmup`` unrecorded draws (to adapt stateful baselines)."""
    kwargs = {} if kwargs is None else kwargs
    params = [p for p in (guide.parameters() if params is None else params) if p.requires_grad]
    if not params:
        raise ValueError("no parameters with requires_grad to differentiate")
    pyro.set_rng_seed(seed)
    draws = []
    for i in range(warmup + num_samples):
        loss = surrogate_loss(objective, model, guide, *args, **kwargs)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        if i >= warmup:
            flat = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
            draws.append(torch.cat([g.reshape(-1) for g in flat]).detach())
    return torch.stack(draws)  # [S, P]


def gradient_statistics(draws: torch.Tensor) -> dict:
    """Total variance of one draw, squared norm of the mean, and SNR of the mean (see above)."""
    s = draws.shape[0]
    if s < 2:
        raise ValueError("need at least 2 gradient draws to estimate a variance")
    mean = draws.mean(0)
    total_var = draws.var(0, unbiased=True).sum().item()
    mean_norm = mean.norm().item()
    return {
        "total_variance": total_var,
        "mean_norm": mean_norm,
        "snr": mean_norm / math.sqrt(total_var / s) if total_var > 0 else math.inf,
        "num_samples": s,
    }


def gradient_variance(objective, model, guide, args=(), kwargs=None, params=None,
                      num_samples: int = 100, warmup: int = 0, seed: int = 0) -> dict:
    """:func:`gradient_statistics` of :func:`sample_gradients`."""
    draws = sample_gradients(objective, model, guide, args, kwargs, params, num_samples, warmup,
                             seed)
    return gradient_statistics(draws)


def compare_estimators(estimators: dict, model, args=(), kwargs=None, params=None,
                       num_samples: int = 100, warmup: int = 20, seed: int = 0) -> dict:
    """Measure several estimators of the same gradient with the same seed.

    :param dict estimators: ``name -> (objective, guide)``; the guides may differ in handlers
        only (e.g. :func:`~zoo.poutine.score_function` or enumeration) and share parameters
    :param params: the shared parameters (default: the first guide's)
    :returns: ``name -> statistics`` plus, under each, ``variance_ratio`` to the first entry
    """
    results, first = {}, None
    for name, (objective, guide) in estimators.items():
        if params is None:
            params = list(guide.parameters())
        pyro.clear_param_store()  # decaying-average baselines live there; start each one fresh
        stats = gradient_variance(objective, model, guide, args, kwargs, params, num_samples,
                                  warmup, seed)
        first = stats["total_variance"] if first is None else first
        stats["variance_ratio"] = stats["total_variance"] / first if first > 0 else math.inf
        results[name] = stats
    return results


def markdown_table(results: dict) -> str:
    """The :func:`compare_estimators` results as a markdown table."""
    lines = ["| estimator | total variance | ratio | mean norm | SNR |", "|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['total_variance']:.4g} | {r['variance_ratio']:.3g} | "
                     f"{r['mean_norm']:.4g} | {r['snr']:.3g} |")
    return "\n".join(lines)
