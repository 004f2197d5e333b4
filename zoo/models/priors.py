r"""The Laplace approximation of a Dirichlet prior in the softmax basis (AVITM, Sec. 3.2).

A Dirichlet :math:`\mathrm{Dir}(\alpha)` over :math:`K` topics is approximated by a logistic
normal: :math:`\theta = \mathrm{softmax}(h)`, :math:`h \sim \mathcal{N}(\mu_0, \operatorname{diag}
\Sigma_0)` with

.. math::

    \mu_{0k} = \log\alpha_k - \frac{1}{K}\sum_i \log\alpha_i, \qquad
    \Sigma_{0kk} = \frac{1}{\alpha_k}\Big(1 - \frac{2}{K}\Big)
                   + \frac{1}{K^2}\sum_i\frac{1}{\alpha_i}.

For :math:`\alpha = 1` this gives :math:`\mu_0 = 0` and :math:`\Sigma_0 = (1 - 1/K) I`, the
values in the AVITM code (``mu2``/``var2``) and in OCTIS. ProdLDA, NVDM-style topic models, CTM
(as the initial prior mean and covariance) and GraphBTM all use it.

**References:**

1. *Autoencoding Variational Inference for Topic Models*, A. Srivastava, C. Sutton (2017),
   arXiv:1703.01488
2. *Choice of Basis for Laplace Approximation*, D. J. C. MacKay, Machine Learning 33 (1998)
"""

from __future__ import annotations

import torch


def dirichlet_laplace_approximation(alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loc, scale)`` of the logistic-normal approximation of ``Dir(alpha)``; ``alpha`` is a
    1-d tensor of K positive concentrations. Returns two tensors of shape ``[K]``, the scale
    being the standard deviation :math:`\\sqrt{\\Sigma_{0kk}}`."""
    alpha = torch.as_tensor(alpha, dtype=torch.get_default_dtype())
    if alpha.dim() != 1 or not bool((alpha > 0).all()):
        raise ValueError("alpha must be a 1-d tensor of positive concentrations")
    k = alpha.shape[0]
    log_alpha = alpha.log()
    loc = log_alpha - log_alpha.mean()
    var = (1.0 / alpha) * (1.0 - 2.0 / k) + (1.0 / alpha).sum() / k**2
    return loc, var.sqrt()
