r"""Probabilistic PCA: a linear-Gaussian latent variable model whose evidence and posterior are
exact, the reference against which importance sampling, IWAE and resampling are checked.

.. math::

    z_n &\sim \mathcal{N}(0, I_d), \\
    x_n \mid z_n &\sim \mathcal{N}(W z_n + \mu, \sigma^2 I_D),

so that [1, Sec. 3]

.. math::

    x_n &\sim \mathcal{N}(\mu,\; C), \qquad C = W W^\top + \sigma^2 I_D, \\
    z_n \mid x_n &\sim \mathcal{N}\big(M^{-1} W^\top (x_n - \mu),\; \sigma^2 M^{-1}\big),
    \qquad M = W^\top W + \sigma^2 I_d.

The maximum-likelihood parameters are closed form too [1, Sec. 3.2]: with the eigenvalues
:math:`\lambda_1 \ge \dots \ge \lambda_D` and eigenvectors :math:`U` of the sample covariance,
:math:`\sigma^2 = \frac{1}{D - d}\sum_{j > d} \lambda_j` and
:math:`W = U_d (\Lambda_d - \sigma^2 I)^{1/2}` (:meth:`PPCA.fit_maximum_likelihood_`).

The latent site ``"z"`` is a local real vector, so every Gaussian guide of the zoo fits it;
:class:`ExactPosteriorGuide` samples the exact posterior (every importance weight then equals
:math:`p(x_n)`), for tests and the tutorial.

**References:**

1. *Probabilistic Principal Component Analysis*, M. E. Tipping, C. M. Bishop (1999),
   Journal of the Royal Statistical Society B 61(3)
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import nn

from zoo.models import checks
from zoo.models.base import LatentSite, ZooModel
from zoo.registry import register_model


@register_model("ppca")
class PPCA(ZooModel):
    """:param int input_dim: D, size of one observation
    :param int latent_dim: d, size of ``z``
    :param float noise_scale: initial :math:`\\sigma`
    :param int seed: seed of the random initial ``weight`` (so a config rebuilds it)
    """

    default_guide = "diagonal_normal"

    def __init__(self, input_dim: int = 64, latent_dim: int = 2, noise_scale: float = 1.0,
                 seed: int = 0):
        super().__init__()
        checks.count("input_dim", input_dim)
        checks.count("latent_dim", latent_dim)
        if not 0 < latent_dim <= input_dim:
            raise ValueError(f"need 0 < latent_dim <= input_dim, got {latent_dim}, {input_dim}")
        self.config = dict(input_dim=input_dim, latent_dim=latent_dim, noise_scale=noise_scale,
                           seed=seed)
        self.latent_dim = latent_dim
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(input_dim, latent_dim, generator=g))  # [D, d]
        self.bias = nn.Parameter(torch.zeros(input_dim))  # [D]
        self.log_noise_scale = nn.Parameter(torch.tensor(float(noise_scale)).log())

    def latent_sites(self):
        return (LatentSite("z", "real", (self.latent_dim,)),)

    @property
    def noise_scale(self) -> torch.Tensor:
        """The observation noise's standard deviation sigma."""
        return self.log_noise_scale.exp()

    def forward(self, x: torch.Tensor | None = None, num_data: int | None = None, batch_size=1):
        """The generative program: z ~ N(0, I), x | z ~ N(W z + b, sigma^2 I) for every point of the
        batch (``x=None``: ``batch_size`` draws)."""
        if x is None:
            x_template = self.bias.new_empty(batch_size, self.config["input_dim"])
        else:
            x_template = x
        with self.data_plate(x_template, num_data):
            z = pyro.sample("z", dist.Normal(self.bias.new_zeros(self.latent_dim), 1.0)
                            .to_event(1))  # [batch, d]
            loc = z @ self.weight.T + self.bias  # [batch, D]
            return pyro.sample("x", dist.Normal(loc, self.noise_scale).to_event(1), obs=x)

    def marginal(self) -> dist.MultivariateNormal:
        """:math:`p(x) = \\mathcal{N}(\\mu, W W^\\top + \\sigma^2 I)`."""
        eye = torch.eye(self.config["input_dim"], dtype=self.weight.dtype,
                        device=self.weight.device)
        cov = self.weight @ self.weight.T + self.noise_scale**2 * eye  # [D, D]
        return dist.MultivariateNormal(self.bias, covariance_matrix=cov)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """Exact :math:`\\log p(x_n)` for each row of ``x`` ``[batch, D]``, shape ``[batch]``."""
        return self.marginal().log_prob(x)

    def posterior(self, x: torch.Tensor) -> dist.MultivariateNormal:
        """Exact :math:`p(z_n \\mid x_n)`, batch shape ``[batch]``, event shape ``[d]``."""
        var = self.noise_scale**2
        eye = torch.eye(self.latent_dim, dtype=self.weight.dtype, device=self.weight.device)
        m = self.weight.T @ self.weight + var * eye  # [d, d]
        m_inv = torch.linalg.inv(m)
        mean = (x - self.bias) @ self.weight @ m_inv.T  # [batch, d]
        cov = var * m_inv
        cov = 0.5 * (cov + cov.T)  # exactly symmetric for the Cholesky factorization
        return dist.MultivariateNormal(mean, covariance_matrix=cov.expand(x.shape[0], -1, -1))

    @torch.no_grad()
    def fit_maximum_likelihood_(self, x: torch.Tensor) -> PPCA:
        """Set ``weight``, ``bias`` and ``noise_scale`` to Tipping & Bishop's closed-form MLE."""
        d, dim = self.latent_dim, self.config["input_dim"]
        if d == dim:
            raise ValueError("the MLE needs latent_dim < input_dim (sigma^2 is the mean of the "
                             "discarded eigenvalues)")
        mean = x.mean(0)
        cov = torch.cov((x - mean).T, correction=0)  # [D, D]
        evals, evecs = torch.linalg.eigh(cov)  # ascending
        evals, evecs = evals.flip(0), evecs.flip(1)
        var = evals[d:].mean().clamp(min=1e-6)
        self.weight.copy_(evecs[:, :d] * (evals[:d] - var).clamp(min=0).sqrt())
        self.bias.copy_(mean)
        self.log_noise_scale.copy_(var.sqrt().log())
        return self


class ExactPosteriorGuide(PyroModule):
    """Samples ``z`` from :meth:`PPCA.posterior`: the optimal proposal, whose importance weights
    all equal :math:`p(x_n)` and whose ELBO equals :math:`\\log p(x)`. With ``inflate > 1``
    (covariance times ``inflate**2``) or ``shift != 0`` (mean moved by ``shift`` in every
    coordinate) it is a controllably imperfect proposal with known target.

    Not registered: unlike the guide families it holds a reference to its model (its
    "parameters" are the model's), so it would not fit the registry's contract that a guide
    is generic and owns its parameters. Build it directly: ``ExactPosteriorGuide(ppca)``.
    """

    def __init__(self, model: PPCA, inflate: float = 1.0, shift: float = 0.0):
        super().__init__()
        if not isinstance(model, PPCA):
            raise ValueError(f"ExactPosteriorGuide needs a PPCA model, got {type(model).__name__}")
        if inflate <= 0:
            raise ValueError(f"inflate must be positive, got {inflate}")
        self.model = [model]  # a list, so the model's parameters are not registered twice
        self.inflate, self.shift = float(inflate), float(shift)

    def forward(self, x: torch.Tensor, num_data: int | None = None, **kwargs):
        """The guide program: the exact Gaussian posterior p(z | x) of the PPCA model (optionally
        inflated or shifted), in the data plate."""
        model = self.model[0]
        post = model.posterior(x)
        if self.inflate != 1.0 or self.shift != 0.0:
            post = dist.MultivariateNormal(post.loc + self.shift,
                                           scale_tril=self.inflate * post.scale_tril)
        with model.data_plate(x, num_data):
            return pyro.sample("z", post)  # [batch, d]
