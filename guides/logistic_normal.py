r"""Logistic-normal guide for simplex latents: a Gaussian mapped onto the simplex by a bijection.

.. math::

    u_d \sim \mathcal{N}\big(\mu_\phi(x_d), \operatorname{diag}\sigma_\phi(x_d)^2\big)
        \in \mathbb{R}^{K-1}, \qquad \theta_d = T(u_d) \in \Delta^{K-1},

    \log q_\phi(\theta_d \mid x_d) = \log \mathcal{N}(u_d) - \log\big|\det J_T(u_d)\big|,

with :math:`T` torch's ``StickBreakingTransform``: :math:`z_k = \sigma(u_k - \log(K - k))`,
:math:`\theta_k = z_k \prod_{j<k}(1 - z_j)`, a bijection from :math:`\mathbb{R}^{K-1}` onto the
open simplex whose offsets map :math:`u = 0` to the uniform distribution. Its log-Jacobian is
exact, so the guide's density is exact and any objective (``trace``, ``meanfield`` with a Monte
Carlo KL, IWAE) can score it. The softmax of :math:`K` Gaussians used by ProdLDA is *not* a
bijection (torch's ``SoftmaxTransform`` has no log-Jacobian); that is why ProdLDA instead puts
its latent on the logits and this guide uses :math:`K - 1` free coordinates.

The transform caches its last input (``cache_size=1``), so the density of a sample is computed
from the Gaussian draw itself rather than by inverting the stick-breaking map, which loses
precision over thousands of sticks.

**Global sites** (LDA's topics) get the same family with learned parameters: a mean-field
logistic normal per topic. We prefer it to a Dirichlet for topics because it has no
low-concentration sampling problem and its scales shrink smoothly as data accumulate; the
``dirichlet`` guide offers the Dirichlet alternative, and the tutorial compares both. Their
posterior mean has no closed form, so :meth:`LogisticNormalGuide.posterior_mean` averages
seeded samples.

**References:**

1. *Logistic-normal distributions*, J. Aitchison, S. M. Shen, Biometrika 67 (1980)
2. *A Correlated Topic Model of Science*, D. M. Blei, J. D. Lafferty, Annals of Applied
   Statistics 1 (2007)
3. *Autoencoding Variational Inference for Topic Models*, A. Srivastava, C. Sutton (2017),
   arXiv:1703.01488
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch.distributions.transforms import StickBreakingTransform
from torch.nn import functional as F

from guides.dirichlet import SimplexGuide
from zoo.registry import register_guide


def logistic_normal(loc: torch.Tensor, scale: torch.Tensor):
    """``T_* N(loc, diag scale^2)``: ``loc``/``scale`` ``[..., K-1]`` -> a distribution on the
    ``K``-simplex with event shape ``[K]``."""
    base = dist.Normal(loc, scale).to_event(1)
    return dist.TransformedDistribution(base, [StickBreakingTransform(cache_size=1)])


@register_guide("logistic_normal")
class LogisticNormalGuide(SimplexGuide):
    """:param model: a model whose latent sites are all simplices (e.g. ``lda``)
    :param hidden_dims: encoder widths
    :param float loc_bound: documents' Gaussian locations are squashed into
        ``(-loc_bound, loc_bound)`` by ``loc_bound * tanh(raw / loc_bound)``
    :param float global_init_scale: initial standard deviation of the topics' Gaussians
    :param int posterior_samples: samples averaged by :meth:`posterior_mean`
    """

    def __init__(self, model, hidden_dims=(100, 100), activation="softplus", dropout=0.0,
                 loc_bound=8.0, global_init_scale=0.1, posterior_samples=256):
        self.loc_bound = float(loc_bound)
        self.global_init_scale = float(global_init_scale)
        self.posterior_samples = int(posterior_samples)
        super().__init__(model, hidden_dims, activation, dropout)
        self.options.update(loc_bound=loc_bound, global_init_scale=global_init_scale,
                            posterior_samples=posterior_samples)

    def local_dim(self, size: int) -> int:
        return 2 * (size - 1)  # loc and raw scale of K - 1 free coordinates

    def local_dist(self, raw):
        raw_loc, raw_scale = raw.chunk(2, dim=-1)  # [batch, K-1] each
        # A soft bound on the location: under a Dirichlet prior with alpha < 1 the ELBO rewards
        # proportions ever closer to 0, and an unbounded location lets one large step push a
        # stick below float32's range (log 0 in the Jacobian).
        loc = self.loc_bound * torch.tanh(raw_loc / self.loc_bound)
        return logistic_normal(loc, F.softplus(raw_scale) + 1e-4)

    def init_global(self, shape):
        free = (*shape[:-1], shape[-1] - 1)
        raw_scale = torch.full(free, self.global_init_scale).expm1().log()  # softplus^-1
        return {"loc": 0.5 * torch.randn(*free), "raw_scale": raw_scale}

    def global_loc_scale(self, name: str):
        p = self.global_params(name)
        return p["loc"], F.softplus(p["raw_scale"]) + 1e-4

    def global_dist(self, name: str):
        return logistic_normal(*self.global_loc_scale(name))

    @torch.no_grad()
    def posterior_mean(self, name: str, seed: int = 0) -> torch.Tensor:
        """Monte Carlo :math:`\\mathbb{E}_q[\\beta]` of a global site from
        ``posterior_samples`` draws of a private, seeded generator (global RNG untouched)."""
        loc, scale = self.global_loc_scale(name)
        gen = torch.Generator(device=loc.device).manual_seed(seed)
        transform = StickBreakingTransform()
        total = torch.zeros(*loc.shape[:-1], loc.shape[-1] + 1, device=loc.device)
        for _ in range(self.posterior_samples):  # a loop bounds memory at [K, V]
            eps = torch.randn(loc.shape, generator=gen, device=loc.device)
            total += transform(loc + scale * eps)
        return total / self.posterior_samples
