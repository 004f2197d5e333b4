r"""Correlated topic model: a logistic-normal prior whose topic correlations are learned.

Blei & Lafferty's CTM [1] replaces LDA's Dirichlet by a logistic normal whose covariance says
which topics occur together. As in NVCTM [2] the posterior is amortized by an encoder (a guide:
``diagonal_normal``, ``householder`` or ``ctf``), and as in Blei & Lafferty the prior is learned
by maximizing the ELBO (empirical Bayes); by default only its correlations and one common scale
(``prior_form="correlation"``, see *Symmetric prevalence* below):

.. math::

    z_d &\sim \mathcal{N}(\mu_0, \Sigma_0), \qquad
        \Sigma_0 = s^2 D^{-1/2} L L^\top D^{-1/2}, \quad D = \operatorname{diag}(L L^\top),
        \quad s^2 = \tfrac1K \operatorname{tr}(L L^\top), \quad \mu_0 = \bar m \mathbf{1},
        \quad \theta_d = \mathrm{softmax}(z_d), \\
    x_d \mid z_d &\sim \mathrm{Multinomial}\Big(N_d,\;
        \mathrm{softmax}\big(\mathrm{BN}(\lambda^\top \tilde\theta_d) + b\big)\Big)
        \quad\text{(``decoder="product"``, the default)}, \\
    x_d \mid z_d &\sim \mathrm{Multinomial}\big(N_d,\; \theta_d^\top \beta\big),
        \quad \beta_k = \mathrm{softmax}(\lambda_k)
        \quad\text{(``decoder="mixture"``, Blei \& Lafferty's and LDA's)},

with :math:`\lambda \in \mathbb{R}^{K \times V}` point-estimated, :math:`\tilde\theta_d` the
proportions after dropout (training only), :math:`\bar m` the mean of a learned vector
:math:`m`, and :math:`L` lower triangular with a positive diagonal (its log is the parameter),
initialized at the Laplace approximation of :math:`\mathrm{Dir}(\alpha)` in the softmax basis [3]
(:func:`~zoo.models.priors.dirichlet_laplace_approximation`): :math:`m = 0`,
:math:`L = \sqrt{1 - 1/K}\, I` for :math:`\alpha = 1`. ``prior_form="full"`` is Blei &
Lafferty's unconstrained prior, :math:`\mu_0 = m`, :math:`\Sigma_0 = L L^\top`.

**Decoder.** NVCTM's decoder is log-linear in the topic proportions [2] (a product of experts,
as ProdLDA's [3]), not Blei & Lafferty's mixture: BatchNorm without scale on the word logits, its
learned shift :math:`b` as a per-word background, dropout 0.6 on :math:`\theta`.
``decoder="mixture"`` (dropout 0.25, NVLDA's) is the generative model of Blei & Lafferty, and
:meth:`CTM.init_topics` seeds it.

**Prior warm-up.** Learning :math:`\mu_0, \Sigma_0` from the first step starts a rich-get-richer
loop: documents that use two topics together make the prior correlate them, the correlated prior
makes the KL cheaper along their common direction, so the encoder uses them together still more,
and the topics blur into mixtures of themes. So the prior is held at the Laplace approximation
for the first ``prior_warmup`` epochs, while the topics form as in ProdLDA, and learned by
empirical Bayes afterwards. The switch is the annealed quantity ``prior_learning``, set by the
engine's schedule (:meth:`CTM.default_schedules`, :mod:`zoo.schedules`), not counted inside the
generative program; the ``ctf`` guide follows the same switch
(:class:`~guides.ctf.CentralizedFlowGuide`). Outside the engine, set it with
``model.set_annealed("prior_learning", 1)`` or build the model with ``prior_warmup=0``.

**Symmetric prevalence.** Learning every topic's own mean and variance (``prior_form="full"``)
makes the prior an automatic relevance determination [6]: a topic the encoder uses a little less
gets a smaller prior variance and mean, which makes using it costlier still, until it is
starved. ``prior_form="correlation"`` (the default) learns what the CTM is for, which topics occur
together (:math:`D^{-1/2} L L^\top D^{-1/2}`, a correlation matrix), and one common scale
:math:`s`, while every topic keeps the same mean and variance, as under the symmetric Dirichlet
the prior starts from. A planted prior with equal variances is the same under both forms.
What each choice measured on 20 Newsgroups: README, "Correlated topic models", and
``benchmarks/results/correlated_topics/HISTORY.md``.

**Correlations.** softmax is invariant to adding a constant to :math:`z`, so the likelihood
says nothing about :math:`\Sigma_0` along :math:`\mathbf{1}`; :func:`topic_correlations` reports
the correlation matrix of the identifiable part :math:`C \Sigma_0 C`,
:math:`C = I - \mathbf{1}\mathbf{1}^\top/K` (Blei & Lafferty fix :math:`z_K = 0` for the same
reason). ``centered=False`` gives the raw :math:`\Sigma_0`.

**References:**

1. *Correlated Topic Models*, D. M. Blei, J. D. Lafferty, NIPS 2005 (and *A correlated topic model
   of Science*, Ann. Appl. Stat. 1(1), 2007)
2. *Neural Variational Correlated Topic Modeling*, L. Liu, H. Huang, Y. Gao, Y. Zhang, X. Wei,
   WWW 2019, doi:10.1145/3308558.3313561
3. *Autoencoding Variational Inference for Topic Models*, A. Srivastava, C. Sutton (2017),
   arXiv:1703.01488
4. *k-means++: The Advantages of Careful Seeding*, D. Arthur, S. Vassilvitskii, SODA 2007
5. *Products of Experts*, G. E. Hinton, ICANN (1999)
6. *Sparse Bayesian Learning and the Relevance Vector Machine*, M. E. Tipping, JMLR 1 (2001)
   (automatic relevance determination: D. J. C. MacKay, R. M. Neal, 1994-1996)
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from zoo.models import checks
from zoo.models.base import LatentSite, ZooModel
from zoo.models.nets import flat_apply
from zoo.models.priors import dirichlet_laplace_approximation
from zoo.models.word_counts import WordCounts, seed_topics
from zoo.registry import register_model
from zoo.schedules import Switch


@register_model("ctm")
class CTM(ZooModel):
    r""":param int input_dim: vocabulary size V
    :param int num_topics: K
    :param float alpha: symmetric Dirichlet concentration whose Laplace approximation is the
        initial prior (AVITM uses 1)
    :param float theta_dropout: dropout on the topic proportions while training; ``None`` for
        the decoder's default (ProdLDA's 0.6 for ``"product"``, NVLDA's 0.25 for ``"mixture"``)
    :param bool learn_prior: learn the prior mean and Cholesky factor (else keep the Laplace
        prior fixed: a logistic-normal ProdLDA or NVLDA)
    :param float prior_warmup: epochs during which the prior stays at its initial value before it
        is learned (the engine's ``prior_learning`` schedule, see the module docstring); 0
        learns it from the first step
    :param str prior_form: ``"correlation"`` (learn the topic correlations and one common scale;
        every topic keeps the same prior mean and variance) or ``"full"`` (Blei & Lafferty's
        learned mean and full covariance); see *Symmetric prevalence* in the module docstring
    :param str decoder: ``"product"`` (NVCTM's and ProdLDA's log-linear decoder,
        :math:`\mathrm{softmax}(\mathrm{BN}(\lambda^\top\theta) + b)`) or ``"mixture"`` (Blei &
        Lafferty's and LDA's :math:`\theta^\top\beta`)
    """

    default_guide = "ctf"
    topic_model = True
    encoder_input = "log1p"
    #: the prior is learned (1) or held at its initial value (0), see :meth:`default_schedules`
    annealed = ("prior_learning",)
    #: AVITM's encoder (two softplus layers of 100, dropout 0.2, BatchNorm heads); the CLI
    #: applies these unless told otherwise. They fit all three guides (diagonal, householder, ctf).
    default_guide_options = dict(hidden_dims=(100, 100), activation="softplus", dropout=0.2,
                                 batch_norm=True)
    #: AVITM's optimizer for ProdLDA (Adam, lr 2e-3, beta1 = 0.99, batches of 200), analytic
    #: KL, and twice the default ``prior_warmup``: half the run forms topics, half learns the prior
    default_train_config = dict(lr=2e-3, betas=(0.99, 0.999), batch_size=200,
                                objective="meanfield", epochs=100)
    DEFAULT_THETA_DROPOUT = {"product": 0.6, "mixture": 0.25}
    PRIOR_FORMS = ("correlation", "full")

    def __init__(self, input_dim: int = 2000, num_topics: int = 50, alpha: float = 1.0,
                 theta_dropout: float | None = None, learn_prior: bool = True,
                 prior_warmup: float = 50.0, decoder: str = "product",
                 prior_form: str = "correlation"):
        super().__init__()
        checks.count("input_dim", input_dim)
        checks.count("num_topics", num_topics)
        checks.positive("alpha", alpha)
        if theta_dropout is not None:
            checks.probability("theta_dropout", theta_dropout)
        checks.choice("prior_form", prior_form, self.PRIOR_FORMS)
        if decoder not in self.DEFAULT_THETA_DROPOUT:
            raise ValueError(f"decoder must be 'product' or 'mixture', got {decoder!r}")
        if prior_warmup < 0:
            raise ValueError(f"prior_warmup must be a number of epochs >= 0, got {prior_warmup}")
        if theta_dropout is None:
            theta_dropout = self.DEFAULT_THETA_DROPOUT[decoder]
        self.config = dict(input_dim=input_dim, num_topics=num_topics, alpha=alpha,
                           theta_dropout=theta_dropout, learn_prior=learn_prior,
                           prior_warmup=prior_warmup, decoder=decoder, prior_form=prior_form)
        self.decoder = decoder
        self.prior_form = prior_form
        self.num_topics = num_topics
        self.learn_prior = learn_prior
        self.prior_warmup = float(prior_warmup)
        # Whether the prior is learned yet: set by the engine's schedule (a buffer, so a
        # checkpoint keeps it).
        self.register_buffer("prior_learning", torch.tensor(learn_prior and prior_warmup == 0))
        loc, scale = dirichlet_laplace_approximation(torch.full((num_topics,), float(alpha)))
        self.prior_loc = nn.Parameter(loc, requires_grad=learn_prior)  # [K]
        self.prior_log_diag = nn.Parameter(scale.log(), requires_grad=learn_prior)  # [K]
        self.prior_offdiag = nn.Parameter(torch.zeros(num_topics, num_topics),
                                          requires_grad=learn_prior)  # [K, K], strict lower used
        # Topic-word logits lambda, small random init so the topics start apart.
        self.topic_logits = nn.Parameter(0.01 * torch.randn(num_topics, input_dim))  # [K, V]
        self.theta_dropout = nn.Dropout(theta_dropout)
        if decoder == "product":
            self.logit_norm = nn.BatchNorm1d(input_dim, affine=False)
            # BatchNorm's learned shift (the AVITM code's batch_norm, center=True, scale=False):
            # a per-word background, so the topics need not carry the frequent words themselves.
            self.background = nn.Parameter(torch.zeros(input_dim))  # [V]

    def latent_sites(self):
        return (LatentSite("doc_logits", "real", (self.num_topics,)),)

    @classmethod
    def data_config(cls, dataset) -> dict:
        return {"input_dim": dataset.num_features}

    def prior_scale_tril(self) -> torch.Tensor:
        """Cholesky factor L of the prior covariance, ``[K, K]``."""
        L = torch.tril(self.prior_offdiag, -1) + torch.diag_embed(self.prior_log_diag.exp())
        if self.prior_form == "full":
            return L
        # Row i of L has the norm of topic i's standard deviation: normalize the rows (then
        # L L^T is a correlation matrix) and give every topic the mean variance. Equal marginals
        # pass through unchanged, so a planted prior means the same under both forms.
        norms = L.norm(dim=-1, keepdim=True)  # [K, 1]
        return L / norms * norms.square().mean().sqrt()

    def prior_mean(self) -> torch.Tensor:
        """The prior mean mu_0, ``[K]``: ``prior_loc``, or its average for every topic."""
        if self.prior_form == "full":
            return self.prior_loc
        return self.prior_loc.mean().expand(self.num_topics)

    def prior_covariance(self) -> torch.Tensor:
        """The prior covariance of the topic logits, L L^T, ``[K, K]``."""
        L = self.prior_scale_tril()
        return L @ L.T  # [K, K]

    def prior(self, learning: bool = True) -> dist.MultivariateNormal:
        """N(mu_0, L L^T); with ``learning=False`` its parameters get no gradient."""
        loc, scale_tril = self.prior_mean(), self.prior_scale_tril()
        if not learning:
            loc, scale_tril = loc.detach(), scale_tril.detach()
        return dist.MultivariateNormal(loc, scale_tril=scale_tril)

    def default_schedules(self) -> dict:
        """``prior_learning`` switches on after ``prior_warmup`` epochs of documents (never, with
        ``learn_prior=False``)."""
        return {"prior_learning": Switch(self.prior_warmup)} if self.learn_prior else {}

    def topic_correlations(self) -> torch.Tensor:
        """The learned topic correlations ``[K, K]`` (:func:`topic_correlations`)."""
        return topic_correlations(self)

    def topic_words(self) -> torch.Tensor:
        """Topic-word probabilities beta, ``[K, V]``, rows on the simplex."""
        return F.softmax(self.topic_logits, dim=-1)

    def topic_word_matrix(self, guide=None) -> torch.Tensor:
        r"""The topics ``[K, V]`` (the accessor every topic model of the zoo provides). For the
        product decoder, what it emits for a document made of topic :math:`k` alone, less the
        background (eval mode), :math:`\mathrm{softmax}_v\big((\lambda_{kv} - m_v)/s_v\big)` with
        BatchNorm's running mean :math:`m` and scale :math:`s`, as
        :meth:`~zoo.models.prodlda.ProdLDA.topic_word_matrix`."""
        with torch.no_grad():
            if self.decoder == "mixture":
                return self.topic_words()
            norm = self.logit_norm
            logits = (self.topic_logits - norm.running_mean) / (norm.running_var + norm.eps).sqrt()
            return F.softmax(logits, dim=-1)

    def word_log_probs(self, doc_logits: torch.Tensor) -> torch.Tensor:
        """log p(w | z) for ``doc_logits [..., K]``; returns ``[..., V]``."""
        theta = self.theta_dropout(F.softmax(doc_logits, dim=-1))  # [..., K]
        if self.decoder == "product":
            logits = flat_apply(lambda t: self.logit_norm(t @ self.topic_logits), theta)
            return (logits + self.background).log_softmax(-1)  # [..., V]
        if self.training:  # dropout leaves theta off the simplex: renormalize
            theta = theta / theta.sum(-1, keepdim=True).clamp_min(1e-12)
        return (theta @ self.topic_words()).clamp_min(1e-30).log()  # [..., V]

    @torch.no_grad()
    def init_topics(self, counts: torch.Tensor, generator: torch.Generator | None = None,
                    smoothing: float = 0.5) -> torch.Tensor:
        r"""Seed the topics with ``K`` documents of ``counts [N, V]`` chosen by k-means++ [4] on
        the Hellinger distance of their word frequencies, :math:`\lambda_k = \log(f_{d_k} +
        s/V)`. A mixture decoder started from near-uniform topics often merges two topics and
        leaves one unused (a local optimum); spread-out seeds avoid most of that. Returns the
        chosen document indices."""
        seeds, index = seed_topics(counts, self.num_topics, generator, smoothing)  # [K, V]
        self.topic_logits.copy_(seeds.log() - seeds.log().mean(-1, keepdim=True))
        return index

    def forward(self, x: torch.Tensor | None = None, num_data: int | None = None,
                batch_size: int = 1, doc_length: int = 100):
        """Score counts ``x [batch, V]``; with ``x=None`` draw ``batch_size`` documents of
        ``doc_length`` words from the prior."""
        if x is None:
            x_template = self.topic_logits.new_empty(batch_size, self.config["input_dim"])
        else:
            x_template = x
        with self.data_plate(x_template, num_data):
            z = pyro.sample("doc_logits", self.prior(bool(self.prior_learning)))  # [batch, K]
            logits = self.word_log_probs(z)  # [batch, V]
            # N_d is read from the observed counts; total only matters for sampling; the
            # multinomial coefficient, constant in every parameter, is left out in training
            return pyro.sample("words", WordCounts.from_log_probs(
                logits, doc_length, normalized=not self.training), obs=x)


def topic_correlations(model: CTM, centered: bool = True) -> torch.Tensor:
    r"""The correlation matrix ``[K, K]`` of the learned prior covariance :math:`\Sigma_0`
    (of :math:`C\Sigma_0 C` when ``centered``, the part softmax can identify; see the module
    docstring). Entries are in [-1, 1] with a unit diagonal."""
    with torch.no_grad():
        cov = model.prior_covariance()
        if centered:
            k = cov.shape[0]
            c = torch.eye(k, dtype=cov.dtype, device=cov.device) - 1.0 / k
            cov = c @ cov @ c
        sd = cov.diagonal().clamp_min(1e-12).sqrt()
        return (cov / sd[:, None] / sd[None, :]).clamp(-1.0, 1.0)


def top_correlated_pairs(corr: torch.Tensor, n: int = 10) -> list[tuple[int, int, float]]:
    """The ``n`` topic pairs ``(i, j, r_ij)`` with ``i < j`` of largest ``|r_ij|``."""
    k = corr.shape[0]
    i, j = torch.triu_indices(k, k, offset=1)
    values = corr[i, j]
    order = values.abs().argsort(descending=True)[:n]
    return [(int(i[o]), int(j[o]), float(values[o])) for o in order]
