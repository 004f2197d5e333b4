r"""Logistic-normal guide for simplex latents: a Gaussian mapped onto the simplex by a bijection.

.. math::

    u_d \sim \mathcal{N}\big(\mu_\phi(x_d), \operatorname{diag}\sigma_\phi(x_d)^2\big)
        \in \mathbb{R}^{K-1}, \qquad \theta_d = T(u_d) \in \Delta^{K-1},

    \log q_\phi(\theta_d \mid x_d) = \log \mathcal{N}(u_d) - \log\big|\det J_T(u_d)\big|,

with :math:`T` the additive logistic map (Aitchison's inverse additive log-ratio),
:math:`T(u) = \mathrm{softmax}(u_1, \dots, u_{K-1}, 0)`: a bijection from
:math:`\mathbb{R}^{K-1}` onto the open simplex (inverse :math:`u_k = \log\theta_k -
\log\theta_K`) that maps :math:`u = 0` to the uniform distribution. Its Jacobian
:math:`\partial\theta_{1:K-1}/\partial u = \operatorname{diag}(\theta') - \theta'\theta'^\top`
has determinant :math:`\prod_{k=1}^{K}\theta_k`, so

.. math:: \log\big|\det J_T(u)\big| = \sum_{k=1}^{K} \log\theta_k
    = \sum_{k=1}^{K} \operatorname{log\,softmax}(u, 0)_k,

computed stably from the log-softmax, and the guide's density is exact: any objective
(``trace``, ``meanfield`` with a Monte Carlo KL, IWAE) can score it. The softmax of :math:`K`
Gaussians used by ProdLDA is *not* a bijection (torch's ``SoftmaxTransform`` has no
log-Jacobian); that is why ProdLDA puts its latent on the logits and this guide uses
:math:`K - 1` free coordinates. We use this map rather than torch's ``StickBreakingTransform``
(pyro's ``LogisticNormal``): both are exact, but a softmax normalizes by one sum, whereas
stick-breaking accumulates rounding through a cumulative product and over LDA's 2,000-word
topics its outputs miss the simplex by more than torch's 1e-6 support check allows. The
transform caches its last input, so a sample's density uses the Gaussian draw itself.

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
from torch.distributions import constraints
from torch.distributions.transforms import Transform
from torch.nn import functional as F

from guides.simplex import SimplexGuide
from zoo.models.word_counts import seed_topics
from zoo.registry import register_guide


class AdditiveLogisticTransform(Transform):
    r"""``u [..., K-1] -> softmax(u, 0) [..., K]``, with
    :math:`\log|\det J| = \sum_k \log\theta_k`."""

    domain = constraints.real_vector
    codomain = constraints.simplex
    bijective = True

    def __init__(self, cache_size=1):
        super().__init__(cache_size=cache_size)

    def __eq__(self, other):
        return isinstance(other, AdditiveLogisticTransform)

    @staticmethod
    def _padded(u):
        return torch.cat([u, u.new_zeros(*u.shape[:-1], 1)], -1)  # [..., K]

    def _call(self, u):
        # Clamped at the smallest normal float, as torch clamps its Dirichlet samples: a
        # proportion that underflows to 0 would make log p(theta) infinite under alpha < 1.
        # The clamp moves values by less than 1e-38; the log-Jacobian uses the exact
        # log-softmax. The softmax runs in float64: in float32 the proportions of a peaked
        # row over thousands of words (LDA's topics, V = 4,258) sum to 1 only within 1.4e-6,
        # and Pyro's validation refuses a simplex off by 1e-6; rounded from float64, every
        # row passed (3e-7 at most over 8,000 rows of 4,258).
        theta = torch.softmax(self._padded(u).double(), -1).to(u.dtype)
        return theta.clamp_min(torch.finfo(u.dtype).tiny)

    def _inverse(self, y):
        log_y = y.clamp_min(torch.finfo(y.dtype).tiny).log()
        return log_y[..., :-1] - log_y[..., -1:]

    def log_abs_det_jacobian(self, u, y):
        return torch.log_softmax(self._padded(u), -1).sum(-1)

    def forward_shape(self, shape):
        return (*shape[:-1], shape[-1] + 1)

    def inverse_shape(self, shape):
        return (*shape[:-1], shape[-1] - 1)


def logistic_normal(loc: torch.Tensor, scale: torch.Tensor):
    """``T_* N(loc, diag scale^2)``: ``loc``/``scale`` ``[..., K-1]`` -> a distribution on the
    ``K``-simplex with event shape ``[K]``."""
    base = dist.Normal(loc, scale).to_event(1)
    return dist.TransformedDistribution(base, [AdditiveLogisticTransform(cache_size=1)])


@register_guide("logistic_normal")
class LogisticNormalGuide(SimplexGuide):
    """On 20 Newsgroups under LDA's default prior alpha = 1/K the topics collapse (diversity 0.17):
    the Monte Carlo prior term (alpha - 1) sum_k log theta_k rewards every document's
    proportions for sinking into a corner whatever its words. Train it as AVITM trains NVLDA,
    under alpha = 1 (``doc_concentration=1``), with a KL warm-up (``kl_warmup=10``): diversity
    0.51, refined perplexity 1015 against the Dirichlet guide's 950 (README, "Topic models on
    20 Newsgroups").

    :param model: a model whose latent sites are all simplices (e.g. ``lda``)
    :param hidden_dims: encoder widths
    :param batch_norm: BatchNorm (no affine) on the encoder's locations (default: on;
        without it the planted groups of ``tests/models/test_topic_recovery.py`` were merged in 6
        seeds of 10); ``"affine"`` adds a learned scale and shift
    :param float global_step_scale: the topics' parameters move this many times faster than
        the encoder's under the same optimizer
    :param float loc_bound: documents' Gaussian locations are squashed into
        ``(-loc_bound, loc_bound)`` by ``loc_bound * tanh(raw / loc_bound)``
    :param float local_init_scale: initial standard deviation of the documents' Gaussians
    :param float global_init_scale: initial standard deviation of the topics' Gaussians
    :param int posterior_samples: samples averaged by :meth:`posterior_mean`
    :param bool seed_topics: at the first training step, start the global sites (LDA's topics)
        at documents of that batch (:meth:`seed_global_sites`)
    """

    def __init__(self, model, hidden_dims=(100, 100), activation="softplus", dropout=0.0,
                 batch_norm=True, global_step_scale=1.0, loc_bound=8.0, local_init_scale=0.7,
                 global_init_scale=0.1, posterior_samples=256, seed_topics=True):
        self.loc_bound = float(loc_bound)
        self.local_init_scale = float(local_init_scale)
        self.global_init_scale = float(global_init_scale)
        self.posterior_samples = int(posterior_samples)
        super().__init__(model, hidden_dims, activation, dropout, batch_norm, global_step_scale)
        self.options.update(loc_bound=loc_bound, local_init_scale=local_init_scale,
                            global_init_scale=global_init_scale,
                            posterior_samples=posterior_samples, seed_topics=seed_topics)
        # whether the topics were seeded from documents yet (a buffer: a checkpoint keeps it)
        self.register_buffer("topics_seeded", torch.tensor(not seed_topics))

    def forward(self, x: torch.Tensor, num_data: int | None = None, **kwargs):
        if self.training and not bool(self.topics_seeded):
            self.seed_global_sites(x)
        return super().forward(x, num_data, **kwargs)

    @torch.no_grad()
    def seed_global_sites(self, x: torch.Tensor) -> None:
        """Set the locations of every global site ``[K, V]`` over the data's ``V`` words (LDA's
        topics) to documents of the batch ``x`` chosen by k-means++
        (:func:`~zoo.models.word_counts.seed_topics`; the global RNG, which the engine seeds).
        Started from random near-uniform topics, every topic learns the same corpus average
        before the encoder tells documents apart (on 20 Newsgroups, K = 50: diversity 0.51 after
        2 epochs, 0.11 after 10); from documents the topics start apart (0.38 after 10)."""
        for s in self.global_sites:
            if len(s.event_shape) == 2 and s.event_shape[-1] == x.shape[-1]:
                seeds, _ = seed_topics(x, s.event_shape[0])  # [K, V]
                alr = seeds.log()[:, :-1] - seeds.log()[:, -1:]  # the inverse additive map
                bound = 2.5 * self.loc_bound  # global_loc_scale's soft bound, inverted
                raw = bound * torch.atanh((alr / bound).clamp(-0.999, 0.999))
                self.globals[f"{s.name}__loc"].copy_(raw / self.global_step_scale)
        self.topics_seeded.fill_(True)

    def local_dim(self, size: int) -> int:
        """Outputs of the encoder head for a simplex site of ``size`` components: a location and a
        raw scale for each of its K - 1 free coordinates."""
        return 2 * (size - 1)  # loc and raw scale of K - 1 free coordinates

    def mean_dim(self, size: int) -> int:
        """How many of the head's outputs are the location (the K - 1 locations come first)."""
        return size - 1  # the locations come first

    def init_head(self, head):
        """Start every document at the same scale, ``local_init_scale`` (zero weights on the scale
        half of the head)."""
        # Every document starts at the same scale (local_init_scale; the weights of the scale
        # half of the head are zero), so the first steps are not driven by random scales.
        free = head.out_features // 2
        with torch.no_grad():
            head.weight[free:].zero_()
            head.bias[free:] = float(torch.tensor(self.local_init_scale).expm1().log())

    def local_dist(self, raw):
        """q(theta_d | x_d): the logistic normal whose location (softly bounded by ``loc_bound``)
        and scale the head's raw outputs ``raw`` give."""
        raw_loc, raw_scale = raw.chunk(2, dim=-1)  # [batch, K-1] each
        # A soft bound on the location: under a Dirichlet prior with alpha < 1 the ELBO rewards
        # proportions ever closer to 0, and an unbounded location lets one large step push a
        # stick below float32's range (log 0 in the Jacobian).
        loc = self.loc_bound * torch.tanh(raw_loc / self.loc_bound)
        return logistic_normal(loc, F.softplus(raw_scale) + 1e-4)

    def init_global(self, shape):
        """Initial mean-field parameters of a global simplex site of ``shape``: small random
        locations of its K - 1 free coordinates and scale ``global_init_scale``."""
        free = (*shape[:-1], shape[-1] - 1)
        raw_scale = torch.full(free, self.global_init_scale).expm1().log()  # softplus^-1
        return {"loc": 0.5 * torch.randn(*free), "raw_scale": raw_scale}

    def global_loc_scale(self, name: str):
        """Location (softly bounded at 2.5 ``loc_bound``, so that no word's probability underflows)
        and scale of the mean-field logistic normal over global site ``name``."""
        p = self.global_params(name)
        # Bounded like the documents' locations (at 2.5 loc_bound): under eta < 1 the Monte
        # Carlo ELBO keeps rewarding rare words' probabilities for falling, until
        # theta^T beta underflows for some word and the loss is no longer finite.
        bound = 2.5 * self.loc_bound
        loc = bound * torch.tanh(p["loc"] / bound)
        return loc, F.softplus(p["raw_scale"]) + 1e-4

    def global_dist(self, name: str):
        """q of global site ``name``: the logistic normal at :meth:`global_loc_scale`."""
        return logistic_normal(*self.global_loc_scale(name))

    @torch.no_grad()
    def posterior_mean(self, name: str, seed: int = 0) -> torch.Tensor:
        """Monte Carlo :math:`\\mathbb{E}_q[\\beta]` of a global site from
        ``posterior_samples`` draws of a private, seeded generator (global RNG untouched)."""
        loc, scale = self.global_loc_scale(name)
        gen = torch.Generator(device=loc.device).manual_seed(seed)
        transform = AdditiveLogisticTransform(cache_size=0)
        total = torch.zeros(*loc.shape[:-1], loc.shape[-1] + 1, device=loc.device)
        for _ in range(self.posterior_samples):  # a loop bounds memory at [K, V]
            eps = torch.randn(loc.shape, generator=gen, device=loc.device)
            total += transform(loc + scale * eps)
        return total / self.posterior_samples
