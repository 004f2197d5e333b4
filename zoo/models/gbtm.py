r"""GraphBTM: a biterm topic model whose data point is the biterm graph of a mini-corpus.

Short texts have too few words for document-level co-occurrence; BTM [2] models the corpus's
biterms instead, and GraphBTM [1] encodes the biterm graph of a few documents at a time with a
graph convolutional network [3]. For a mini-corpus with biterm counts :math:`A`
(:mod:`zoo.data.biterms`):

.. math::

    h &\sim \mathcal{N}\big(\mu_0, \operatorname{diag}\Sigma_0\big), \qquad
        \theta = \mathrm{softmax}(h), \qquad
        p = \mathrm{softmax}\big(\mathrm{BN}(W\theta)\big) \in \Delta^{V-1}, \\
    \log p(A \mid h) &= \sum_{\text{biterms } \{i,j\}} \big[\log p_i + \log p_j\big]
        = \sum_i c_i \log p_i, \qquad c = A\mathbf{1} + \operatorname{diag}A,

observed as ``Multinomial(c; p)`` on the endpoint counts :math:`c` (site ``"endpoints"``), with
the Laplace prior of :math:`\mathrm{Dir}(1)` (:func:`~zoo.models.priors.
dirichlet_laplace_approximation`), :math:`W \in \mathbb{R}^{V \times K}` without bias and
BatchNorm without affine parameters, dropout on :math:`\theta` (0.6 in [1]). The paper writes the
likelihood as :math:`\sum_{ij} A_{ij}[\log p_i + \log p_j]` over the full symmetric matrix, which
counts every :math:`i \ne j` biterm twice; here each biterm counts once. Its code also scales the
reconstruction by :math:`10^{-4}`; ``biterm_weight`` tempers the likelihood the same way (1 by
default: the plain ELBO).

**Two likelihoods.** The endpoint form above (``likelihood="endpoints"``, the paper's) scores each
word of a biterm on its own, so nothing ties a biterm's two words to one topic; with BatchNorm's
per-word normalization its topics are the words each topic raises above the batch's mean, and on
short texts they are rare words that seldom meet (ranked by the raw columns of :math:`W` rather
than as :meth:`GraphBTM.topic_word_matrix` ranks them, rarer still). BTM's own likelihood
(``likelihood="biterms"``) draws one topic per biterm and both its words from that topic,

.. math::

    z_b \sim \mathrm{Cat}(\theta), \quad w_{b1}, w_{b2} \mid z_b \sim \mathrm{Cat}(\phi_{z_b}),
    \qquad
    \log p(A \mid h) = \sum_{i \le j} A_{ij} \log \sum_k \theta_k \phi_{ki} \phi_{kj},

with topics :math:`\phi_k` (:math:`\mathrm{softmax}(W_{\cdot k})`, or counts: below), a mixture
(no BatchNorm), dropout on :math:`\theta` (0.25, renormalized, as NVLDA's), observed as the
factor ``"biterms"`` (the order of a pair's two words, a constant :math:`\log 2`, is left out).
It is BTM's generative story with :math:`\theta` per mini-corpus instead of one for the corpus,
and what the co-occurrence of two words rewards is what NPMI measures. Started from random
near-uniform topics a mixture learns the corpus average in every topic before the encoder tells
mini-corpora apart, and keeps it; the topics start at mini-corpora of the first batch chosen by
k-means++ (:func:`~zoo.models.word_counts.seed_topics`), as CTM's mixture decoder and the
``logistic_normal`` guide's topics do.

**Fitting the topics as BTM does.** With ``topic_step="gradient"`` Adam follows the ELBO's
gradient in :math:`W` along with the encoder. With ``topic_step="em"`` (the default for
``"biterms"``) the topics are not parameters but counts :math:`\lambda_{kv}` (a buffer,
:math:`\phi_k = \lambda_k / \sum_v \lambda_{kv}`) fitted to BTM's corpus-level likelihood with
uniform proportions, :math:`\sum_b \log \sum_k \phi_{k b_1} \phi_{k b_2}`, by stochastic
(online) EM [4]: each training batch's responsibilities
:math:`r_{bk} \propto \phi_{k b_1} \phi_{k b_2}` give the expected topic-word counts, scaled
from a batch of :math:`B` mini-corpora to the corpus's :math:`M`, and

.. math::

    \lambda \leftarrow (1 - \rho_t)\,\lambda + \rho_t \Big(\beta + \frac{M}{B}
    \sum_{b \in \text{batch}} r_{bk}\,([b_1 = v] + [b_2 = v])\Big),
    \qquad \rho_t = (t + 1)^{-1/2},

with BTM's :math:`\beta = 0.01`, the step taken by :class:`~zoo.models.natural_steps.NaturalSteps`
(once per backward pass, so evaluating a loss never moves the topics). The encoder is then
trained by the ELBO with the topics held fixed: the per-mini-corpus proportions are inferred,
not used to fit the topics. Fitting the topics through those proportions (the ELBO's coordinate
step, or its gradient) lets each mini-corpus's mixture explain away co-occurrence that
corpus-wide topics must carry; the README has the measured difference.

The guide is the graph encoder ``gcn_normal`` (:mod:`guides.gcn_normal`), which fits every model
that declares ``graph_input``.

**References:**

1. *GraphBTM: Graph Enhanced Autoencoded Variational Inference for Biterm Topic Model*,
   Q. Zhu, Z. Feng, X. Li, EMNLP 2018 (code: github.com/valdersoul/GraphBTM)
2. *A Biterm Topic Model for Short Texts*, X. Yan, J. Guo, Y. Lan, X. Cheng, WWW 2013
3. *Semi-Supervised Classification with Graph Convolutional Networks*, T. N. Kipf, M. Welling,
   ICLR 2017
4. *On-line Expectation-Maximization Algorithm for Latent Data Models*, O. Cappé, E. Moulines,
   JRSS B 71(3) (2009)
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn

from zoo.data.biterms import biterm_matrix, endpoint_counts, graph_biterms, stack_sparse
from zoo.models import checks
from zoo.models.base import LatentSite, ZooModel, data_plate
from zoo.models.natural_steps import NaturalSteps
from zoo.models.nets import flat_apply
from zoo.models.priors import dirichlet_laplace_approximation
from zoo.models.word_counts import WordCounts, seed_topics
from zoo.registry import register_model


@register_model("gbtm")
class GraphBTM(ZooModel):
    """:param int input_dim: vocabulary size V
    :param int num_topics: K
    :param float alpha: symmetric Dirichlet concentration of the Laplace prior
    :param float dropout: dropout on theta while training; None: the paper's 0.6 for
        ``"endpoints"``, NVLDA's 0.25 for ``"biterms"``
    :param float biterm_weight: scale of the biterm log-likelihood (1: the ELBO)
    :param str likelihood: ``"endpoints"`` (the paper's product decoder on endpoint counts) or
        ``"biterms"`` (BTM's: one topic per biterm, a mixture)
    :param str topic_step: how the mixture's topics are fitted: ``"gradient"`` (Adam on the
        ELBO, with the encoder) or ``"em"`` (BTM's corpus-level likelihood by online EM, the
        encoder trained with them fixed; ``"biterms"`` only); None: ``"em"`` for ``"biterms"``,
        ``"gradient"`` for ``"endpoints"``
    """

    likelihoods = ("endpoints", "biterms")
    topic_steps = ("gradient", "em")
    #: BTM's topic smoothing beta (Yan et al.), the EM step's prior counts
    em_smoothing = 0.01

    default_guide = "gcn_normal"
    topic_model = True
    plate_name = "mini_corpora"
    #: data points are biterm graphs ``[B, V, V]`` (sparse), not flat vectors
    graph_input = True

    @classmethod
    def prepare_data(cls, dataset):
        """Documents with token order -> mini-corpora of biterm graphs (window 30, 3 documents
        per mini-corpus, as the paper); refuses a bag of words with a message."""
        from zoo.data.biterms import biterm_dataset

        return dataset if dataset.kind == "graph" else biterm_dataset(dataset)

    def __init__(self, input_dim: int = 2000, num_topics: int = 50, alpha: float = 1.0,
                 dropout: float | None = None, biterm_weight: float = 1.0,
                 likelihood: str = "biterms", topic_step: str | None = None):
        super().__init__()
        checks.count("input_dim", input_dim)
        checks.count("num_topics", num_topics)
        checks.positive("alpha", alpha)
        checks.choice("likelihood", likelihood, self.likelihoods)
        if topic_step is None:
            topic_step = "em" if likelihood == "biterms" else "gradient"
        checks.choice("topic_step", topic_step, self.topic_steps)
        if topic_step == "em" and likelihood != "biterms":
            raise ValueError("topic_step='em' fits the topics of BTM's mixture likelihood; "
                             f"likelihood={likelihood!r} has a product decoder, whose topics "
                             "only the gradient fits. Use likelihood='biterms'.")
        if dropout is None:
            dropout = 0.6 if likelihood == "endpoints" else 0.25
        checks.probability("dropout", dropout)
        self.config = dict(input_dim=input_dim, num_topics=num_topics, alpha=alpha,
                           dropout=dropout, biterm_weight=biterm_weight, likelihood=likelihood,
                           topic_step=topic_step)
        self.likelihood, self.topic_step = likelihood, topic_step
        self.num_topics = num_topics
        self.biterm_weight = biterm_weight
        loc, scale = dirichlet_laplace_approximation(torch.full((num_topics,), float(alpha)))
        self.register_buffer("prior_loc", loc)
        self.register_buffer("prior_scale", scale)
        if topic_step == "em":
            # the topics as counts (state, not parameters) and the online EM steps moving them
            self.register_buffer("topic_counts", torch.ones(num_topics, input_dim))
            self.topic_em = NaturalSteps({"topic_counts": (num_topics, input_dim)},
                                         offset=1.0, decay=0.5)
        else:
            self.decoder = nn.Linear(num_topics, input_dim, bias=False)  # W: [V, K]
            nn.init.xavier_normal_(self.decoder.weight)
        # the product decoder's per-word normalization; a mixture's topics are softmax(W)
        self.decoder_norm = (nn.BatchNorm1d(input_dim, affine=False)
                             if likelihood == "endpoints" else None)
        self.theta_dropout = nn.Dropout(dropout)
        # whether the mixture's topics were seeded from mini-corpora yet (a buffer: a
        # checkpoint keeps it); the endpoint form needs no seeds
        self.register_buffer("topics_seeded", torch.tensor(likelihood == "endpoints"))

    def latent_sites(self):
        return (LatentSite("doc_logits", "real", (self.num_topics,)),)

    def word_logits(self, doc_logits: torch.Tensor) -> torch.Tensor:
        r"""``[..., K]`` -> ``[..., V]`` log-probabilities (up to a constant) of an endpoint's
        word: the product decoder's logits, or the mixture's :math:`\log \theta^\top\phi`."""
        theta = self.theta_dropout(torch.softmax(doc_logits, -1))  # [..., K]
        if self.decoder_norm is not None:
            return flat_apply(lambda t: self.decoder_norm(self.decoder(t)), theta)  # [..., V]
        return (self.proportions(theta) @ self.topic_words()).clamp_min(1e-30).log()

    def proportions(self, theta: torch.Tensor) -> torch.Tensor:
        """theta after dropout, back on the simplex (training only: dropout leaves it)."""
        if not self.training:
            return theta
        return theta / theta.sum(-1, keepdim=True).clamp_min(1e-12)

    def topic_words(self) -> torch.Tensor:
        r"""The mixture's topics ``[K, V]``: :math:`\phi = \mathrm{softmax}(W^\top)`, or the
        normalized counts with ``topic_step="em"``."""
        if self.topic_step == "em":
            return self.topic_counts / self.topic_counts.sum(-1, keepdim=True)
        return torch.softmax(self.decoder.weight.T, -1)

    @torch.no_grad()
    def expected_topic_counts(self, graphs: torch.Tensor) -> torch.Tensor:
        r"""E-step of BTM's corpus-level likelihood with uniform proportions: the expected
        topic-word counts ``[K, V]`` of the biterms of ``graphs [B, V, V]``, each biterm's two
        words shared among the topics as :math:`r_{bk} \propto \phi_{k b_1}\phi_{k b_2}`."""
        phi = self.topic_words()
        _, i, j, count = graph_biterms(graphs)
        pair = (phi[:, i] * phi[:, j]).T  # [biterms, K]
        share = pair / pair.sum(-1, keepdim=True).clamp_min(1e-30) * count[:, None]
        return phi.new_zeros(phi.shape).index_add_(1, i, share.T).index_add_(1, j, share.T)

    def biterm_log_likelihood(self, doc_logits: torch.Tensor, graphs: torch.Tensor):
        r""":math:`\sum_{i \le j} A_{ij} \log \sum_k \theta_k \phi_{ki}\phi_{kj}` of each
        mini-corpus, ``[..., B]``, from the nonzero entries of ``graphs [B, V, V]`` alone (a
        few dozen per mini-corpus: :math:`O(\text{biterms} \times K)`, never ``[B, V, V]``)."""
        theta = self.proportions(self.theta_dropout(torch.softmax(doc_logits, -1)))
        phi = self.topic_words()  # [K, V]
        b, i, j, count = graph_biterms(graphs)
        pair = (phi[:, i] * phi[:, j]).T  # [biterms, K]
        mixed = (theta[..., b, :] * pair).sum(-1).clamp_min(1e-30)  # [..., biterms]
        return theta.new_zeros(theta.shape[:-1]).index_add(-1, b, count * mixed.log())

    @torch.no_grad()
    def seed_topics(self, graphs: torch.Tensor) -> None:
        """Start the mixture's topics at mini-corpora of ``graphs`` chosen by k-means++ on
        their endpoint counts (:func:`~zoo.models.word_counts.seed_topics`; the global RNG,
        which the engine seeds)."""
        seeds, _ = seed_topics(endpoint_counts(graphs), self.num_topics)  # [K, V]
        if self.topic_step == "em":  # the first step's E-step starts from them
            self.topic_counts.copy_(seeds)
        else:
            self.decoder.weight.copy_((seeds.log() - seeds.log().mean(-1, keepdim=True)).T)
        self.topics_seeded.fill_(True)

    def forward(self, x: torch.Tensor | None = None, num_data: int | None = None,
                batch_size: int = 1, num_biterms: int = 50):
        """Score biterm graphs ``x [B, V, V]`` (sparse or dense); with ``x=None`` draw the
        endpoint counts of ``num_biterms`` biterms per mini-corpus from the prior."""
        if x is not None and self.training and not bool(self.topics_seeded):
            self.seed_topics(x)
        if x is not None and self.training and self.topic_step == "em":
            self.em_step(x, num_data)
        x_template = self.prior_loc.new_zeros(batch_size, 1) if x is None else x
        with data_plate(self.plate_name, x_template, num_data):
            h = pyro.sample("doc_logits",
                            dist.Normal(self.prior_loc, self.prior_scale).to_event(1))
            if x is None:
                return self.sample_endpoints(h, num_biterms)
            with poutine.scale(scale=self.biterm_weight):
                if self.likelihood == "biterms":
                    return pyro.factor("biterms", self.biterm_log_likelihood(h, x))
                # the multinomial coefficient: in eval mode only
                return pyro.sample("endpoints", WordCounts(self.word_logits(h), 1,
                                                           normalized=not self.training),
                                   obs=endpoint_counts(x))

    def em_step(self, graphs: torch.Tensor, num_data: int | None) -> None:
        """Queue this batch's online EM step for the topics (taken when the loss is
        backpropagated: a zero-valued factor's gradient hook, :class:`NaturalSteps`)."""
        scale = (num_data or graphs.shape[0]) / graphs.shape[0]  # the batch -> the corpus
        target = self.em_smoothing + scale * self.expected_topic_counts(graphs)
        self.topic_em.factor("topic_em_step", {"topic_counts": target}, graphs.shape[0],
                             self.topic_counts, lambda name: self.topic_counts)

    def sample_endpoints(self, doc_logits: torch.Tensor, num_biterms: int) -> torch.Tensor:
        """Endpoint counts ``[..., B, V]`` of ``num_biterms`` biterms per mini-corpus from the
        generative story: the product decoder's words, or for ``"biterms"`` a topic per biterm
        (site ``"biterm_topics"``) and both its words from that topic."""
        if self.likelihood == "endpoints":
            return pyro.sample("endpoints", WordCounts(self.word_logits(doc_logits),
                                                       2 * num_biterms))
        theta = torch.softmax(doc_logits, -1)  # [..., B, K] (sampling: eval mode)
        shape = theta.shape[:-1] + (num_biterms,)
        z = pyro.sample("biterm_topics", dist.Categorical(
            theta.unsqueeze(-2).expand(shape + theta.shape[-1:])).to_event(1))  # [..., B, n]
        phi = self.topic_words()[z]  # [..., B, n, V]
        words = pyro.sample("biterm_words", dist.Categorical(
            phi.unsqueeze(-2).expand(shape + (2, phi.shape[-1]))).to_event(2))  # [.., B, n, 2]
        return nn.functional.one_hot(words, phi.shape[-1]).sum((-3, -2)).to(theta.dtype)

    def topic_word_matrix(self, guide=None) -> torch.Tensor:
        r"""The topics ``[K, V]``: the mixture's :math:`\phi_k`, or for the product decoder what
        it emits for a mini-corpus of topic :math:`k` alone (eval mode),
        :math:`\mathrm{softmax}_v\big((W_{vk} - m_v) / s_v\big)` with BatchNorm's running
        mean and scale, as :meth:`~zoo.models.prodlda.ProdLDA.topic_word_matrix`."""
        with torch.no_grad():
            if self.decoder_norm is None:
                return self.topic_words()
            norm = self.decoder_norm
            logits = (self.decoder.weight.T - norm.running_mean) / (norm.running_var
                                                                    + norm.eps).sqrt()
            return torch.softmax(logits, -1)

    def example_batch(self, batch_size: int = 4, doc_length: int = 12) -> torch.Tensor:
        """Biterm graphs of ``batch_size`` random documents (uniform words), sparse."""
        v = self.config["input_dim"]
        docs = torch.randint(v, (batch_size, doc_length)).numpy()
        return stack_sparse([biterm_matrix(d, v) for d in docs], v)
