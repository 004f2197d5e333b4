r"""ProdLDA: the product-of-experts topic model of AVITM.

.. math::

    h_d &\sim \mathcal{N}\big(\mu_0, \operatorname{diag}\Sigma_0\big)
        \quad\text{(local "doc_logits"; Laplace approximation of } \mathrm{Dir}(\alpha)
        \text{ in the softmax basis)}, \\
    \theta_d &= \mathrm{softmax}(h_d), \\
    x_d \mid \theta_d &\sim \mathrm{Multinomial}\Big(N_d,\;
        \mathrm{softmax}\big(\mathrm{BN}(\beta^\top \operatorname{dropout}(\theta_d)) + b\big)\Big),

with :math:`\beta \in \mathbb{R}^{K \times V}` unnormalized: the word distribution is a weighted
*product* of experts :math:`\propto \prod_k \exp(\beta_k)^{\theta_{dk}}` rather than LDA's mixture
:math:`\sum_k \theta_{dk}\beta_k`; BatchNorm has no scale and :math:`b` is its learned shift, a
per-word background. :math:`\mu_0, \Sigma_0` come from
:func:`zoo.models.priors.dirichlet_laplace_approximation` (:math:`\alpha = 1` gives
:math:`\mu_0 = 0`, :math:`\Sigma_0 = (1 - 1/K) I`).

Component collapse (every document's posterior falling on the same few topics early in
training) is what the paper's choices fight: BatchNorm on the decoder logits (and on the guide's
heads), dropout on :math:`\theta` (0.6 in the authors' code) and on the encoder (0.2), and Adam
with a high first moment :math:`\beta_1 = 0.99` at learning rate :math:`2\cdot 10^{-3}`, batch 200.
Those settings are class constants, :attr:`ProdLDA.default_train_config` and
:attr:`ProdLDA.default_guide_options`, which the CLI applies unless told otherwise. The guide is
the generic ``diagonal_normal`` encoder.

**References:**

1. *Autoencoding Variational Inference for Topic Models*, A. Srivastava, C. Sutton (2017),
   arXiv:1703.01488
2. *Products of Experts*, G. E. Hinton, ICANN (1999)
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from zoo.models import checks
from zoo.models.base import LatentSite, ZooModel
from zoo.models.nets import flat_apply
from zoo.models.priors import dirichlet_laplace_approximation
from zoo.models.word_counts import WordCounts
from zoo.registry import register_model


@register_model("prodlda")
class ProdLDA(ZooModel):
    """:param int input_dim: vocabulary size :math:`V`
    :param int num_topics: :math:`K`
    :param float alpha: symmetric Dirichlet concentration that the Laplace prior approximates
    :param float dropout: dropout probability on :math:`\\theta` (AVITM keeps 0.4, so 0.6)
    :param bool batch_norm: BatchNorm (no affine parameters) on the decoder logits
    """

    default_guide = "diagonal_normal"
    topic_model = True
    plate_name = "documents"
    max_plate_nesting = 1
    encoder_input = "identity"  # AVITM feeds raw counts to its encoder
    #: the AVITM code's encoder: two softplus layers of 100, dropout 0.2, and on both heads
    #: BatchNorm with a learned shift (TensorFlow's ``batch_norm``, ``center=True,
    #: scale=False``). The shift lets q's scales shrink below the unit batch spread that a
    #: shift-free BatchNorm imposes (measured: README, "Topic models on 20 Newsgroups").
    default_guide_options = dict(hidden_dims=(100, 100), activation="softplus", dropout=0.2,
                                 batch_norm="shift")
    #: the paper's optimizer: Adam, lr 2e-3, beta1 = 0.99, minibatches of 200 documents, with
    #: its analytic KL (``meanfield``); 500 epochs, about 170 CPU seconds on 20 Newsgroups (NPMI
    #: still rose past 250 epochs and fell again by 800, README); held-out metrics every 25
    #: epochs and after the last
    default_train_config = dict(lr=2e-3, betas=(0.99, 0.999), batch_size=200, epochs=500,
                                objective="meanfield", eval_every=25)

    def __init__(self, input_dim: int = 2000, num_topics: int = 50, alpha: float = 1.0,
                 dropout: float = 0.6, batch_norm: bool = True):
        super().__init__()
        checks.count("input_dim", input_dim)
        checks.count("num_topics", num_topics)
        checks.positive("alpha", alpha)
        checks.probability("dropout", dropout)
        self.config = dict(input_dim=input_dim, num_topics=num_topics, alpha=alpha,
                           dropout=dropout, batch_norm=batch_norm)
        self.num_topics = num_topics
        loc, scale = dirichlet_laplace_approximation(torch.full((num_topics,), float(alpha)))
        self.register_buffer("prior_loc", loc)
        self.register_buffer("prior_scale", scale)
        self.beta = nn.Linear(num_topics, input_dim, bias=False)  # weight: [V, K]
        self.theta_dropout = nn.Dropout(dropout)
        self.logit_norm = nn.BatchNorm1d(input_dim, affine=False) if batch_norm else nn.Identity()
        # The AVITM code's batch_norm has a learned shift and no scale (TensorFlow's
        # center=True, scale=False): a per-word background b. Without it BatchNorm removes each
        # word's mean logit and the topics must carry the frequent words themselves (Pyro PR
        # #2794 measured NPMI 0.276 -> 0.355 from this change).
        self.background = nn.Parameter(torch.zeros(input_dim)) if batch_norm else None

    def latent_sites(self):
        return (LatentSite("doc_logits", "real", (self.num_topics,)),)

    def word_logits(self, doc_logits: torch.Tensor) -> torch.Tensor:
        """Decoder: ``[..., K]`` logits -> ``[..., V]`` word logits."""
        theta = self.theta_dropout(torch.softmax(doc_logits, -1))  # [..., K]
        logits = flat_apply(lambda t: self.logit_norm(self.beta(t)), theta)  # [..., V]
        return logits if self.background is None else logits + self.background

    def forward(self, x: torch.Tensor | None = None, num_data: int | None = None,
                batch_size: int = 1, doc_length: int = 50):
        """Score counts ``x`` ``[batch, V]``; with ``x=None`` draw ``batch_size`` documents
        of ``doc_length`` words (BatchNorm then needs eval mode or a batch of several)."""
        x_template = self.prior_loc.new_zeros(batch_size, self.input_dim) if x is None else x
        with self.data_plate(x_template, num_data):
            h = pyro.sample("doc_logits",
                            dist.Normal(self.prior_loc, self.prior_scale).to_event(1))
            logits = self.word_logits(h)  # [..., batch, V]
            # N_d is read from the counts; the multinomial coefficient, constant in every
            # parameter, is left out in training (zoo.models.word_counts)
            return pyro.sample("x", WordCounts(logits, doc_length, normalized=not self.training),
                               obs=x)

    def topic_word_matrix(self, guide=None) -> torch.Tensor:
        r"""What the decoder emits for a document made of topic :math:`k` alone, less the shared
        background :math:`b` (eval mode: no dropout, BatchNorm on its running statistics),
        ``[K, V]``:
        :math:`\mathrm{softmax}_v\big((\beta_{kv} - m_v) / s_v\big)`. The BatchNorm shift
        :math:`m_v` and scale :math:`s_v` differ per word, so ranking the raw rows of
        :math:`\beta` (AVITM's printout) can favour words that every topic raises."""
        with torch.no_grad():
            logits = self.beta.weight.T  # [K, V]
            norm = self.logit_norm
            if isinstance(norm, nn.BatchNorm1d):
                logits = (logits - norm.running_mean) / (norm.running_var + norm.eps).sqrt()
            return torch.softmax(logits, -1)
