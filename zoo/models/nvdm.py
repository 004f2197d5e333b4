r"""NVDM: the neural variational document model, a VAE on bags of words.

.. math::

    h_d &\sim \mathcal{N}(0, I_K) \quad\text{(local "z")}, \\
    x_d \mid h_d &\sim \mathrm{Multinomial}\big(N_d,\; \mathrm{softmax}(R\,h_d + b)\big),

a log-linear decoder with :math:`R \in \mathbb{R}^{V \times K}` and a bias :math:`b` (the
background word frequencies): every word :math:`w_{dn}` is drawn independently from
:math:`\mathrm{softmax}(R h_d + b)`, which is the Multinomial over the counts up to its
coefficient. Unlike LDA and ProdLDA nothing constrains :math:`h_d` to a simplex, so the columns
of :math:`R` are directions in a continuous semantic space rather than topics; their top words
are still a useful summary (:meth:`NVDM.topic_word_matrix`). The guide is the generic
``diagonal_normal`` encoder (the paper's is one 500-unit layer; its log-scale head starts at 0).

**References:**

1. *Neural Variational Inference for Text Processing*, Y. Miao, L. Yu, P. Blunsom, ICML (2016),
   arXiv:1511.06038
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from zoo.models import checks
from zoo.models.base import LatentSite, ZooModel
from zoo.models.word_counts import WordCounts
from zoo.registry import register_model


@register_model("nvdm")
class NVDM(ZooModel):
    """:param int input_dim: vocabulary size :math:`V`
    :param int latent_dim: :math:`K`, the size of :math:`h`
    """

    default_guide = "diagonal_normal"
    topic_model = True
    plate_name = "documents"
    max_plate_nesting = 1
    encoder_input = "log1p"
    #: the paper's encoder is one 500-unit layer (tanh in the TF code; ReLU in the paper)
    default_guide_options = dict(hidden_dims=(500,), activation="tanh")
    #: the paper's Adam uses lr 5e-5 with alternating updates; joint updates train stably at
    #: 1e-3; the KL is analytic (the paper's); held-out metrics every 10 epochs and after the last
    default_train_config = dict(lr=1e-3, betas=(0.9, 0.999), batch_size=64, objective="meanfield",
                                eval_every=10)

    def __init__(self, input_dim: int = 2000, latent_dim: int = 50):
        super().__init__()
        checks.count("input_dim", input_dim)
        checks.count("latent_dim", latent_dim)
        self.config = dict(input_dim=input_dim, latent_dim=latent_dim)
        self.latent_dim = latent_dim
        self.decoder = nn.Linear(latent_dim, input_dim)  # R: weight [V, K]; b: bias [V]

    def latent_sites(self):
        return (LatentSite("z", "real", (self.latent_dim,)),)

    def forward(self, x: torch.Tensor | None = None, num_data: int | None = None,
                batch_size: int = 1, doc_length: int = 50):
        """Score counts ``x`` ``[batch, V]``; with ``x=None`` draw ``batch_size`` documents of
        ``doc_length`` words from the prior."""
        x_template = (self.decoder.weight.new_zeros(batch_size, self.input_dim) if x is None
                      else x)
        loc = x_template.new_zeros(self.latent_dim)
        with self.data_plate(x_template, num_data):
            h = pyro.sample("z", dist.Normal(loc, 1.0).to_event(1))  # [..., batch, K]
            logits = self.decoder(h)  # [..., batch, V]
            # N_d is read from the counts; the multinomial coefficient, constant in every
            # parameter, is left out in training (zoo.models.word_counts)
            return pyro.sample("x", WordCounts(logits, doc_length, normalized=not self.training),
                               obs=x)

    def topic_word_matrix(self, guide=None) -> torch.Tensor:
        r"""``softmax`` of each column of :math:`R`, ``[K, V]``: the words each latent
        direction raises most (the bias :math:`b` is the shared background and left out)."""
        return torch.softmax(self.decoder.weight.detach().T, -1)
