r"""Gaussian mixture model with a discrete local assignment: the zoo's test bed for
score-function (black-box) gradient estimators.

.. math::

    c_n &\sim \mathrm{Categorical}(\pi), \qquad \pi = \mathrm{softmax}(\alpha), \\
    x_n \mid c_n &\sim \mathcal{N}\big(\mu_{c_n}, \operatorname{diag} \sigma^2\big),

for :math:`n = 1..N`, with :math:`\alpha, \mu, \sigma` learned by maximum marginal likelihood.
The assignment :math:`c_n` cannot be reparameterized, so the guide's gradient needs the score
function (REINFORCE) estimator with or without a baseline (``TraceGraph_ELBO``) [1, 2], or
enumeration of the C values (``TraceEnum_ELBO``, exact and variance-free) [3]. Everything is
exact here too: :math:`\log p(x_n) = \operatorname{logsumexp}_c [\log \pi_c +
\log \mathcal{N}(x_n; \mu_c, \sigma^2)]` and :math:`p(c_n \mid x_n)` is a softmax
(:meth:`GaussianMixture.log_marginal`, :meth:`GaussianMixture.posterior`).

**References:**

1. *Black Box Variational Inference*, R. Ranganath, S. Gerrish, D. Blei (2014),
   arXiv:1401.0118
2. *Neural Variational Inference and Learning in Belief Networks*, A. Mnih, K. Gregor (2014),
   arXiv:1402.0030
3. *Tensor Variable Elimination for Plated Factor Graphs*, F. Obermeyer, E. Bingham,
   M. Jankowiak, J. Chiu, N. Pradhan, A. Rush, N. Goodman (2019), arXiv:1902.03210
"""

from __future__ import annotations

from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from zoo.models import checks
from zoo.models.base import LatentSite, ZooModel
from zoo.registry import register_model


@dataclass(frozen=True)
class CategoricalSite(LatentSite):
    """A discrete latent site with values ``0 .. num_categories - 1`` (event shape ``()``).

    ``zoo.models.base.SUPPORTS`` lists continuous supports only; this subclass adds
    ``"categorical"`` so that continuous guides see a support they do not fit and say so.
    """

    num_categories: int = 2

    def __post_init__(self):
        if self.support != "categorical" or self.event_shape != ():
            raise ValueError(f"CategoricalSite {self.name!r}: support must be 'categorical' "
                             "with event shape ()")
        if self.num_categories < 2:
            raise ValueError(f"CategoricalSite {self.name!r}: needs at least 2 categories")


@register_model("gmm")
class GaussianMixture(ZooModel):
    """:param int input_dim: D, size of one observation
    :param int num_components: C
    :param float init_scale: spread of the random initial means (seeded by ``seed``)
    :param int seed: seed of the initial means
    """

    default_guide = "categorical"

    def __init__(self, input_dim: int = 64, num_components: int = 10, init_scale: float = 1.0,
                 seed: int = 0):
        super().__init__()
        checks.count("input_dim", input_dim)
        checks.count("num_components", num_components)
        self.config = dict(input_dim=input_dim, num_components=num_components,
                           init_scale=init_scale, seed=seed)
        self.num_components = num_components
        g = torch.Generator().manual_seed(seed)
        self.locs = nn.Parameter(init_scale * torch.randn(num_components, input_dim, generator=g))
        self.log_scale = nn.Parameter(torch.zeros(input_dim))  # [D]
        self.mixture_logits = nn.Parameter(torch.zeros(num_components))  # [C]

    def latent_sites(self):
        site = CategoricalSite("assignment", "categorical", (), num_categories=self.num_components)
        return (site,)

    @property
    def scale(self) -> torch.Tensor:
        """The components' common standard deviation."""
        return 1e-3 + self.log_scale.exp()

    def forward(self, x: torch.Tensor | None = None, num_data: int | None = None, batch_size=1):
        """The generative program: an assignment c ~ Cat(pi) and x ~ N(mu_c, sigma^2 I) for every
        point of the batch (``x=None``: ``batch_size`` draws)."""
        x_template = self.locs.new_empty(batch_size, self.config["input_dim"]) if x is None else x
        with self.data_plate(x_template, num_data):
            c = pyro.sample("assignment", dist.Categorical(logits=self.mixture_logits))  # [batch]
            loc = self.locs[c]  # [batch, D] (or [C, 1, D] when c is enumerated)
            return pyro.sample("x", dist.Normal(loc, self.scale).to_event(1), obs=x)

    def _joint(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`\\log \\pi_c + \\log p(x_n \\mid c)`, shape ``[batch, C]``."""
        obs = dist.Normal(self.locs, self.scale).to_event(1)  # batch [C]
        log_lik = obs.log_prob(x.unsqueeze(-2))  # [batch, C]
        return torch.log_softmax(self.mixture_logits, -1) + log_lik

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """Exact :math:`\\log p(x_n)`, shape ``[batch]``."""
        return torch.logsumexp(self._joint(x), -1)

    def posterior(self, x: torch.Tensor) -> dist.Categorical:
        """Exact :math:`p(c_n \\mid x_n)`, batch shape ``[batch]``."""
        return dist.Categorical(logits=self._joint(x))
