r"""Dirichlet guide for models whose latents live on simplices (LDA's topics and proportions).

.. math::

    q_\phi(\theta_d \mid x_d) &= \mathrm{Dir}\big(\gamma_\phi(x_d)\big), \qquad
        \gamma_\phi(x) = e^{t_\phi(x)}\,\mathrm{softmax}\big(m_\phi(x)\big) + \gamma_{\min}, \\
    q(\beta_k) &= \mathrm{Dir}(\lambda_k), \qquad
        \lambda_k = e^{s_k}\,\mathrm{softmax}(m_k) + \lambda_{\min},

amortized over documents for local sites and mean-field (learned parameters, one Dirichlet per
row) for global sites. Both concentrations are split into a mean direction (:math:`m`) and a
total (:math:`e^{t}`, :math:`e^{s_k}`), so Adam moves a distribution and its certainty on their
own scales; the documents' totals start high (see :meth:`DirichletGuide.init_head`). Both are
reparameterized with the pathwise gradient of the Dirichlet [2]; with the ``meanfield`` objective
the Dirichlet-Dirichlet KL is analytic (torch registers it) [1].

Low concentrations make Dirichlet sampling unreliable (pytorch#76030; Pyro's ``lda.py``
constrains its posterior concentrations above 0.5), so concentrations are floored at
``min_concentration`` (0.05 for documents, ``global_min_concentration`` for topics learned by
gradient).

Two training algorithms use this family, declared by its options and run by the objective
(:mod:`zoo.infer.semi_amortized`), not by the guide: with ``local_steps`` each training
document's :math:`\gamma_d` is found by the model's closed-form E-step and the encoder is
regressed onto it (:meth:`DirichletGuide.amortization_loss`) [3, 4]; with
``global_step="natural"`` the topics' :math:`\lambda` are not parameters but state (buffers)
that stochastic natural-gradient steps move [5] (:mod:`zoo.models.natural_steps`), sampled without a
gradient path; torch clamps Dirichlet draws at the smallest normal float, so the ELBO stays
finite at :math:`\lambda` near the prior's :math:`\eta = 1/K`.

**References:**

1. *Latent Dirichlet Allocation*, D. M. Blei, A. Y. Ng, M. I. Jordan, JMLR 3 (2003)
2. *Pathwise Derivatives Beyond the Reparameterization Trick*, M. Jankowiak, F. Obermeyer,
   ICML (2018), arXiv:1806.01851
3. *Semi-Amortized Variational Autoencoders*, Y. Kim, S. Wiseman, A. C. Miller, D. Sontag,
   A. M. Rush, ICML (2018), arXiv:1802.02550
4. *On the challenges of learning with inference networks on sparse, high-dimensional data*,
   R. G. Krishnan, D. Liang, M. D. Hoffman, AISTATS (2018), arXiv:1710.06085
5. *Stochastic Variational Inference*, M. D. Hoffman, D. M. Blei, C. Wang, J. Paisley,
   JMLR 14 (2013)
"""

from __future__ import annotations

import numpy as np
import pyro.distributions as dist
import torch
from torch import nn

from guides.simplex import SimplexGuide
from zoo.models import checks
from zoo.registry import register_guide


@register_guide("dirichlet")
class DirichletGuide(SimplexGuide):
    """:param model: a model whose latent sites are all simplices (e.g. ``lda``)
    :param hidden_dims: encoder widths
    :param bool batch_norm: BatchNorm (no affine) on the encoder's mean logits
    :param float global_step_scale: the topics' parameters move this many times faster than
        the encoder's under the same optimizer
    :param float init_concentration: initial mean concentration per topic of the documents'
        Dirichlets (their total starts at ``init_concentration * K``)
    :param float min_concentration: floor of the documents' Dirichlet concentrations
    :param float global_min_concentration: floor of the topics' concentrations (with
        ``global_step="gradient"``; natural steps keep them above the prior's)
    :param float global_init_concentration: initial concentration per word of each topic
    :param int local_steps: in training, E-step updates that find each document's Dirichlet
        (semi-amortized, :mod:`zoo.infer.semi_amortized`; needs a model with
        ``conjugate_updates``, as LDA has); 0 for a plain amortized guide; default: the
        model's ``default_local_steps`` (LDA: 20)
    :param str global_step: how the global sites' Dirichlets learn: ``"gradient"`` (the
        optimizer follows the ELBO's reparameterized gradient) or ``"natural"`` (stochastic
        natural-gradient steps, :mod:`zoo.models.natural_steps`; needs a model with
        ``conjugate_updates``); default: the model's ``default_global_step``
    :param float natural_offset: :math:`\\tau` of the natural steps' sizes
        :math:`\\rho_t = (t + \\tau)^{-\\kappa}`, :math:`t = 1, 2, \\dots`
    :param float natural_decay: :math:`\\kappa \\in [0, 1]`; minibatch steps converge for
        :math:`\\kappa \\in (0.5, 1]` (Robbins-Monro); steps over every document with
        :math:`\\tau = \\kappa = 0` are batch variational Bayes (:math:`\\rho = 1`)
    :param int natural_batch: documents per natural step: the batches' estimates are pooled
        until this many are seen (1: a step per batch). Defaults of the three: the model's
        ``default_natural_options``, else :math:`\\tau = 1, \\kappa = 0.7`, 1
    """

    dirichlet_locals = True

    def __init__(self, model, hidden_dims=(100, 100), activation="softplus", dropout=0.0,
                 batch_norm=False, global_step_scale=1.0, init_concentration=10.0,
                 min_concentration=0.05, global_min_concentration=0.05,
                 global_init_concentration=10.0, local_steps=None, global_step=None,
                 natural_offset=None, natural_decay=None, natural_batch=None):
        for name, value in (("init_concentration", init_concentration),
                            ("min_concentration", min_concentration),
                            ("global_min_concentration", global_min_concentration),
                            ("global_init_concentration", global_init_concentration)):
            checks.positive(name, value)
        if local_steps is not None:
            checks.count("local_steps", local_steps, minimum=0)
        self.init_concentration = float(init_concentration)
        self.min_concentration = float(min_concentration)
        self.global_min_concentration = float(global_min_concentration)
        self.global_init_concentration = float(global_init_concentration)
        local_steps = model.default_local_steps if local_steps is None else local_steps
        global_step = model.default_global_step if global_step is None else global_step
        if global_step not in ("gradient", "natural"):
            raise ValueError(f"global_step must be 'gradient' or 'natural', got {global_step!r}")
        natural = {"natural_offset": 1.0, "natural_decay": 0.7, "natural_batch": 1,
                   **model.default_natural_options}
        for key, value in (("natural_offset", natural_offset),
                           ("natural_decay", natural_decay), ("natural_batch", natural_batch)):
            if value is not None:
                natural[key] = value
        super().__init__(model, hidden_dims, activation, dropout, batch_norm, global_step_scale)
        self.local_steps = int(local_steps)
        self.global_step = global_step
        #: the schedule of the natural steps (read by :mod:`zoo.models.natural_steps`)
        self.natural_options = natural
        self.options.update(init_concentration=init_concentration,
                            min_concentration=min_concentration,
                            global_min_concentration=global_min_concentration,
                            global_init_concentration=global_init_concentration,
                            local_steps=local_steps, global_step=global_step,
                            **natural)
        for option, value, default in (("local_steps", self.local_steps, 0),
                                       ("global_step", global_step, "gradient")):
            if value != default and not (model.conjugate_updates and len(self.local_sites) == 1):
                raise ValueError(
                    f"{option}={value!r} needs a model with one local site and closed-form "
                    f"updates (conjugate_updates: local_update and global_update, e.g. 'lda'); "
                    f"'{model.registry_name}' has none. Use {option}={default!r}.")
        if global_step == "natural":
            # The concentrations become state that the natural steps move (buffers: saved and
            # loaded with the guide, invisible to the optimizer), started where the gradient
            # parameterization starts.
            with torch.no_grad():
                start = {s.name: self._gradient_concentration(s.name) for s in self.global_sites}
            for key in list(self.globals):
                del self.globals[key]
            self.natural = nn.Module()
            for name, value in start.items():
                self.natural.register_buffer(name, value.detach().clone())

    def local_dim(self, size: int) -> int:
        """Outputs of the encoder head for a simplex site of ``size`` components: ``size`` mean
        logits and one log total concentration."""
        return size + 1  # mean logits [K] and log total concentration [1]

    def mean_dim(self, size: int) -> int:
        """How many of the head's outputs give the posterior mean (the ``size`` mean logits come
        first)."""
        return size  # the mean logits come first

    def init_head(self, head: nn.Linear):
        """Start the encoder head confident: total concentration ``init_concentration * K`` for
        every document, so that the topics do not all learn the corpus average first."""
        # Start confident (total concentration init_concentration * K, small weights on it):
        # a vague q(theta) hands every document random proportions, the topics then all learn
        # the same average of the corpus, and amortized LDA collapses before the encoder
        # learns anything. Pyro's lda.py sidesteps this with a point estimate (Delta guide).
        size = head.out_features - 1
        with torch.no_grad():
            head.weight[-1].zero_()
            head.bias[-1] = float(np.log(self.init_concentration * size))

    def local_concentration(self, raw):
        logits, log_total = raw[..., :-1], raw[..., -1:]  # [batch, K], [batch, 1]
        total = log_total.clamp(max=15.0).exp()
        return total * torch.softmax(logits, -1) + self.min_concentration

    def local_dist(self, raw):
        """q(theta_d | x_d): the Dirichlet whose concentration the head's raw outputs ``raw`` give.
        """
        return dist.Dirichlet(self.local_concentration(raw))

    def raw_from_concentration(self, concentration):
        """Inverse of :meth:`local_concentration` (concentrations at the floor are lifted
        1e-6 above it, where the logarithm is finite)."""
        excess = (concentration - self.min_concentration).clamp_min(1e-6)  # [batch, K]
        total = excess.sum(-1, keepdim=True)
        return torch.cat([excess.log(), total.log()], -1)  # softmax(log excess) = excess/total

    def amortization_loss(self, encoder_raw: torch.Tensor, target_raw: torch.Tensor):
        r"""What semi-amortized training regresses the encoder onto its E-step targets with,
        ``[batch]``:

        .. math:: -\sum_k \bar m_{dk} \log m_{\phi,k}(x_d)
            + \tfrac12\big(\log t_\phi(x_d) - \log \bar t_d\big)^2,

        the cross-entropy of the encoder's mean direction :math:`m_\phi` (the softmax of
        :meth:`local_concentration`) from the target's :math:`\bar m_d`, plus the squared
        error of the log totals. (Regressing :math:`\log\gamma` itself, or fitting
        :math:`\mathrm{KL}(\mathrm{Dir}(\gamma^T_d)\|\mathrm{Dir}(\gamma_\phi))`, saturates at
        the concentration floor: most targets sit there early on, and once the encoder follows
        them its gradients vanish.)"""
        target = target_raw.detach()  # [batch, K + 1]: log excess, log total
        logits, log_total = encoder_raw[..., :-1], encoder_raw[..., -1]
        mean = torch.softmax(target[..., :-1], -1)  # [batch, K]
        return (-(mean * torch.log_softmax(logits, -1)).sum(-1)
                + 0.5 * (log_total - target[..., -1]).pow(2))  # [batch]

    def init_global(self, shape):
        """Initial mean-field parameters of a global simplex site of ``shape``: small random mean
        logits and a total concentration of ``global_init_concentration`` per component."""
        lead, dim = shape[:-1], shape[-1]
        total = torch.full((*lead, 1), float(dim) * self.global_init_concentration)
        # small random directions break the symmetry between topics
        return {"logits": 0.5 * torch.randn(*shape), "log_total": total.log()}

    def _gradient_concentration(self, name: str) -> torch.Tensor:
        p = self.global_params(name)
        return p["log_total"].exp() * torch.softmax(p["logits"], -1) + self.global_min_concentration

    def global_concentration(self, name: str) -> torch.Tensor:
        """:math:`\\lambda` of a global site: from the learned parameters (``"gradient"``,
        floored at ``global_min_concentration``), or the state the natural steps move in place
        (``"natural"``, no floor: the steps keep it above the prior's concentration)."""
        if self.global_step == "natural":
            return self.natural.get_buffer(name)
        return self._gradient_concentration(name)

    def global_dist(self, name: str):
        """q of global site ``name``: a Dirichlet with its learned concentration."""
        return dist.Dirichlet(self.global_concentration(name))

    def expected_log(self, name: str) -> torch.Tensor:
        r""":math:`\mathbb{E}_q[\log\beta_{kv}] = \psi(\lambda_{kv}) - \psi(\sum_w \lambda_{kw})`
        of a global site."""
        conc = self.global_concentration(name)
        return torch.digamma(conc) - torch.digamma(conc.sum(-1, keepdim=True))

    @torch.no_grad()
    def posterior_mean(self, name: str) -> torch.Tensor:
        """:math:`\\mathbb{E}_q[\\beta] = \\lambda / \\sum_v \\lambda_v` of a global site."""
        conc = self.global_concentration(name)
        return conc / conc.sum(-1, keepdim=True)
