r"""Latent Dirichlet allocation with the topic assignments summed out.

.. math::

    \beta_k &\sim \mathrm{Dir}(\eta\,\mathbf{1}_V), \qquad k = 1..K
        \quad\text{(global "topic_words", in the "topics" plate)}, \\
    \theta_d &\sim \mathrm{Dir}(\alpha\,\mathbf{1}_K), \qquad d = 1..D
        \quad\text{(local "doc_topics", in the "documents" plate)}, \\
    z_{dn} \mid \theta_d &\sim \mathrm{Cat}(\theta_d), \qquad
    w_{dn} \mid z_{dn}, \beta \sim \mathrm{Cat}(\beta_{z_{dn}}), \qquad n = 1..N_d.

The per-word topic assignments :math:`z_{dn}` are **summed out** exactly: for each word,
:math:`p(w_{dn} = v \mid \theta_d, \beta) = \sum_k \theta_{dk}\beta_{kv} = (\theta_d^\top\beta)_v`,
so the bag of words :math:`x_d \in \mathbb{N}^V` (counts, :math:`N_d = \sum_v x_{dv}`) is

.. math::

    x_d \mid \theta_d, \beta \sim \mathrm{Multinomial}\big(N_d,\; \theta_d^\top \beta\big),

the collapsed form used by AVITM's NVLDA [2] and suggested for Pyro's ``lda.py``; no discrete
latent is left, so every guide can be reparameterized. In eval mode the Multinomial includes
the coefficient :math:`\log N_d! - \sum_v \log x_{dv}!` (:mod:`zoo.topics` removes it when it
reports a perplexity, which is the word-sequence form scikit-learn and Gibbs samplers report);
in training it is left out, which changes no gradient (:mod:`zoo.models.word_counts`).

The topics :math:`\beta` are global: they sit outside :meth:`ZooModel.data_plate`, whose
subsampling scales the document terms by :math:`D/B`, so a minibatch ELBO is an unbiased
estimate of the full-corpus ELBO with the topic prior counted once. Guides: ``dirichlet``
(default; in training each document's posterior is found by the closed-form E-step
:meth:`LDA.local_update` and the encoder is regressed onto it, :mod:`zoo.infer.semi_amortized`;
the topics learn from the ELBO's gradient or, with ``global_step="natural"``, by stochastic
natural-gradient steps from :meth:`LDA.global_update` [4], :mod:`zoo.models.natural_steps`) and
``logistic_normal``. Held-out documents are scored by the collapsed bound of
:mod:`zoo.models.lda_bounds`. Measured settings and their history: README, "Topic models on
20 Newsgroups", and ``benchmarks/results/topic_models/``.

**References:**

1. *Latent Dirichlet Allocation*, D. M. Blei, A. Y. Ng, M. I. Jordan, JMLR 3 (2003)
2. *Autoencoding Variational Inference for Topic Models*, A. Srivastava, C. Sutton (2017),
   arXiv:1703.01488
3. *Online Learning for Latent Dirichlet Allocation*, M. D. Hoffman, D. M. Blei, F. Bach,
   NeurIPS (2010) (scikit-learn's priors :math:`\alpha = \eta = 1/K`, ours too)
4. *Stochastic Variational Inference*, M. D. Hoffman, D. M. Blei, C. Wang, J. Paisley,
   JMLR 14 (2013)
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

from zoo.models import checks
from zoo.models.base import LatentSite, ZooModel
from zoo.models.word_counts import WordCounts
from zoo.registry import register_model


@register_model("lda")
class LDA(ZooModel):
    """:param int input_dim: vocabulary size :math:`V`
    :param int num_topics: :math:`K`
    :param float doc_concentration: :math:`\\alpha` (default :math:`1/K`, scikit-learn's)
    :param float topic_concentration: :math:`\\eta` (default :math:`1/K`)
    """

    default_guide = "dirichlet"
    topic_model = True
    conjugate_updates = True
    plate_name = "documents"
    topics_plate = "topics"
    #: the "topics" plate and the "documents" plate are never nested, both use dim -1
    max_plate_nesting = 1
    encoder_input = "log1p"
    #: the topics' parameters take 5x larger optimizer steps than the encoder's (their plain
    #: ELBO gradient is poorly scaled)
    default_guide_options = dict(hidden_dims=(100, 100), activation="softplus",
                                 global_step_scale=5.0)
    #: Adam on the topics' ELBO gradient by default; ``"natural"`` (SVI's steps) is better on
    #: corpora of thousands of documents and stops in VB's local optima on small ones (README)
    default_global_step = "gradient"
    #: the natural steps' schedule: rho_t = (t + 1)^-0.9 from 1,000 pooled documents
    default_natural_options = dict(natural_offset=1.0, natural_decay=0.9, natural_batch=1000)
    #: E-step updates that find each training document's Dirichlet (semi-amortized)
    default_local_steps = 20
    default_train_config = dict(lr=1e-2, betas=(0.9, 0.999), batch_size=200)

    def __init__(self, input_dim: int = 2000, num_topics: int = 20,
                 doc_concentration: float | None = None,
                 topic_concentration: float | None = None):
        super().__init__()
        checks.count("input_dim", input_dim)
        checks.count("num_topics", num_topics)
        alpha = 1.0 / num_topics if doc_concentration is None else float(doc_concentration)
        eta = 1.0 / num_topics if topic_concentration is None else float(topic_concentration)
        if alpha <= 0 or eta <= 0:
            raise ValueError("doc_concentration and topic_concentration must be positive")
        self.config = dict(input_dim=input_dim, num_topics=num_topics,
                           doc_concentration=alpha, topic_concentration=eta)
        self.num_topics = num_topics
        self.vocab_size = input_dim
        # Buffers, not parameters: the priors are fixed, and they follow the module's device.
        self.register_buffer("alpha", torch.full((num_topics,), alpha))
        self.register_buffer("eta", torch.full((input_dim,), eta))

    def latent_sites(self):
        return (
            LatentSite("topic_words", "simplex", (self.num_topics, self.vocab_size), local=False,
                       plate=self.topics_plate),
            LatentSite("doc_topics", "simplex", (self.num_topics,)),
        )

    def forward(self, x: torch.Tensor | None = None, num_data: int | None = None,
                batch_size: int = 1, doc_length: int = 50):
        """Score a batch of word counts ``x`` ``[batch, V]``; with ``x=None`` draw
        ``batch_size`` documents of ``doc_length`` words from the prior."""
        x_template = self.alpha.new_zeros(batch_size, self.vocab_size) if x is None else x
        with pyro.plate(self.topics_plate, self.num_topics):
            topic_words = pyro.sample("topic_words", dist.Dirichlet(self.eta))  # [K, V]
        with self.data_plate(x_template, num_data):
            theta = pyro.sample("doc_topics", dist.Dirichlet(self.alpha))  # [..., batch, K]
            probs = theta @ topic_words  # [..., batch, V]: z summed out
            # N_d is read from the counts; the multinomial coefficient, constant in every
            # parameter, is left out in training (zoo.models.word_counts)
            return pyro.sample("x", WordCounts.from_probs(probs, doc_length,
                                                          normalized=not self.training), obs=x)

    def local_update(self, x: torch.Tensor, concentration: torch.Tensor,
                     expected_log_globals: dict, steps: int) -> torch.Tensor:
        r"""``steps`` coordinate-ascent updates of the documents' :math:`q(\theta_d) =
        \mathrm{Dir}(\gamma_d)` ``[batch, K]`` for counts ``x`` ``[batch, V]``, with
        :math:`q(\beta)` fixed and given by ``expected_log_globals["topic_words"]`` =
        :math:`\mathbb{E}_q[\log\beta]` ``[K, V]``: the E-step of variational Bayes [1, eqs.
        6-7], with each word's responsibilities :math:`\phi_{dvk} \propto \exp(\mathbb{E}
        \log\theta_{dk} + \mathbb{E}\log\beta_{kv})` summed out in closed form,

        .. math::

            \gamma_d \leftarrow \alpha + e^{\mathbb{E}\log\theta_d} \odot
                \Big(\frac{x_d}{e^{\mathbb{E}\log\theta_d}\, e^{\mathbb{E}\log\beta}}\Big)
                \big(e^{\mathbb{E}\log\beta}\big)^\top, \qquad
            \mathbb{E}\log\theta_{dk} = \psi(\gamma_{dk}) - \psi\big(\textstyle\sum_j
                \gamma_{dj}\big).

        Each update increases the mean-field bound with explicit :math:`z` (scikit-learn's),
        which is below the collapsed bound this model's ELBO uses (Jensen), so it is a cheap,
        monotone way to move a guide's :math:`\gamma_d` near its optimum."""
        exp_elog_beta = expected_log_globals["topic_words"].exp()  # [K, V]
        gamma = concentration
        for _ in range(steps):
            exp_elog_theta = (torch.digamma(gamma)
                              - torch.digamma(gamma.sum(-1, keepdim=True))).exp()  # [batch, K]
            norm = (exp_elog_theta @ exp_elog_beta).clamp_min(torch.finfo(x.dtype).tiny)
            gamma = self.alpha + exp_elog_theta * ((x / norm) @ exp_elog_beta.T)  # [batch, K]
        return gamma

    def global_update(self, x: torch.Tensor, concentration: torch.Tensor,
                      expected_log_globals: dict, scale: float = 1.0) -> dict:
        r"""The topics' optimal :math:`q(\beta_k) = \mathrm{Dir}(\hat\lambda_k)` ``[K, V]``
        given the documents' :math:`q(\theta_d) = \mathrm{Dir}(\gamma_d)` (``concentration``
        ``[batch, K]``) and the topics' current :math:`\mathbb{E}_q[\log\beta]`, with the
        batch's counts ``x`` ``[batch, V]`` weighted by ``scale`` (:math:`D/B`): the M-step of
        variational Bayes [1, eq. 7], the target of stochastic variational inference's step,

        .. math::

            \hat\lambda_{kv} = \eta + \text{scale} \sum_d x_{dv}\,\phi_{dvk}, \qquad
            \phi_{dvk} = \frac{e^{\mathbb{E}\log\theta_{dk}}\, e^{\mathbb{E}\log\beta_{kv}}}
                {\sum_j e^{\mathbb{E}\log\theta_{dj}}\, e^{\mathbb{E}\log\beta_{jv}}},

        with :math:`\phi` summed out in closed form as in :meth:`local_update`. Returned as
        ``{"topic_words": lambda_hat}``."""
        exp_elog_beta = expected_log_globals["topic_words"].exp()  # [K, V]
        gamma = concentration
        exp_elog_theta = (torch.digamma(gamma)
                          - torch.digamma(gamma.sum(-1, keepdim=True))).exp()  # [batch, K]
        norm = (exp_elog_theta @ exp_elog_beta).clamp_min(torch.finfo(x.dtype).tiny)
        counts = exp_elog_beta * (exp_elog_theta.T @ (x / norm))  # [K, V]: sum_d x_dv phi_dvk
        return {"topic_words": self.eta + scale * counts}

    def topic_word_matrix(self, guide=None) -> torch.Tensor:
        """Posterior mean of the topics, ``[K, V]``, read from the guide."""
        if guide is None:
            raise ValueError("LDA's topics are latent: pass the trained guide (a 'dirichlet' or "
                             "'logistic_normal' guide) to read their posterior mean.")
        return guide.posterior_mean("topic_words")
