r"""Semi-amortized training: each data point's local posterior found by the model's closed-form
updates, the encoder regressed onto it, the global posteriors stepped by natural gradients.

An encoder's :math:`q_\phi(\theta_d \mid x_d)` is only as good as the encoder, and early in
training it is poor: amortized LDA under a sparse prior collapses, every topic drifting to the
corpus' frequent words (the README's LDA rows). Semi-amortized training [1, 2] runs the
generative model's learning at *refined* local posteriors instead. For a conjugate model
(:attr:`~zoo.models.base.ZooModel.conjugate_updates`: LDA) and a guide whose documents are
Dirichlets (:attr:`~guides.base.ZooGuide.dirichlet_locals`), each training step

1. finds every document's :math:`\gamma_d` by ``guide.local_steps`` coordinate-ascent updates
   of variational Bayes (:meth:`~zoo.models.lda.LDA.local_update`) at the topics' current
   :math:`\mathbb{E}_q[\log\beta]`, started from flat proportions as the classical E-step is
   (started from the encoder's output the updates stay in its basin and the topics then confirm
   its early guesses), without a gradient;
2. evaluates the objective (any ELBO of :mod:`zoo.infer.objectives`) with the guide sampling
   :math:`\mathrm{Dir}(\gamma_d)` (:meth:`~guides.base.AmortizedGuide.using_local_parameters`),
   so the topics learn at near-optimal documents' posteriors;
3. trains the encoder by regression onto :math:`\gamma_d`
   (:meth:`~guides.dirichlet.DirichletGuide.amortization_loss`), a zero-valued guide factor
   scaled like the documents' terms (:math:`D/B`), so the loss's value stays the ELBO;
4. with ``guide.global_step == "natural"``, moves the topics' :math:`\lambda` by a stochastic
   natural-gradient step towards ``model.global_update`` at those :math:`\gamma_d`
   (:class:`~zoo.models.natural_steps.NaturalSteps`, once per backward pass).

Out of training (``eval()``, held-out figures) the guide is used as it is: the encoder alone.
:func:`zoo.infer.objectives.training_loss` builds this loss for guides that declare
``local_steps`` or natural global steps, the plain ``elbo(model, guide)`` otherwise.

**References:**

1. *Semi-Amortized Variational Autoencoders*, Y. Kim, S. Wiseman, A. C. Miller, D. Sontag,
   A. M. Rush, ICML (2018), arXiv:1802.02550
2. *On the challenges of learning with inference networks on sparse, high-dimensional data*,
   R. G. Krishnan, D. Liang, M. D. Hoffman, AISTATS (2018), arXiv:1710.06085
3. *Stochastic Variational Inference*, M. D. Hoffman, D. M. Blei, C. Wang, J. Paisley,
   JMLR 14 (2013)
"""

from __future__ import annotations

import pyro
import torch
from torch import nn

from zoo.models.natural_steps import NaturalSteps


class SemiAmortizedLoss(nn.Module):
    """The loss module ``elbo(model, guide)`` would give, trained semi-amortized (see the
    module docstring); ``forward(x, num_data=None)`` is the negative ELBO.

    :param elbo: a :class:`pyro.infer.ELBO`
    :param model: a model with ``conjugate_updates``
    :param guide: a guide with ``dirichlet_locals`` and ``local_steps > 0`` or
        ``global_step == "natural"``
    :ivar natural: the :class:`~zoo.models.natural_steps.NaturalSteps` moving the guide's global
        sites, or ``None``
    """

    def __init__(self, elbo, model, guide):
        super().__init__()
        if not (model.conjugate_updates and guide.dirichlet_locals):
            raise ValueError(f"semi-amortized training needs a model with closed-form updates "
                             f"and a guide with Dirichlet locals; got '{model.registry_name}' "
                             f"and '{guide.registry_name}'.")
        self.elbo, self.model, self.guide = elbo, model, guide
        (self.site,) = guide.local_sites
        self.natural = None
        if guide.global_step == "natural":
            options = guide.natural_options
            shapes = {s.name: s.event_shape for s in guide.global_sites}
            self.natural = NaturalSteps(shapes, options["natural_offset"],
                                        options["natural_decay"], options["natural_batch"])

    def forward(self, x: torch.Tensor, num_data: int | None = None):
        """The objective's loss of the batch ``x`` under :meth:`guide_program` (the guide with this
        step's E-step posteriors)."""
        return self.elbo.differentiable_loss(self.model, self.guide_program, x,
                                             num_data=num_data)

    def guide_program(self, x: torch.Tensor, num_data: int | None = None, **kwargs):
        """The guide, with this step's E-step posteriors and the two factors that train the
        encoder and step the topics (in training; the guide as it is otherwise)."""
        guide, name = self.guide, self.site.name
        if not guide.training:
            return guide(x, num_data, **kwargs)
        encoder_raw = guide.encoder_parameters(x)  # [batch, K + 1]
        raw = encoder_raw
        if guide.local_steps or self.natural is not None:
            with torch.no_grad():
                expected_logs = {s.name: guide.expected_log(s.name) for s in guide.global_sites}
        if guide.local_steps:
            with torch.no_grad():
                flat = x.new_ones(*x.shape[:-1], self.site.event_shape[0])  # [batch, K]
                gamma = self.model.local_update(x, flat, expected_logs, guide.local_steps)
                raw = {name: guide.raw_from_concentration(gamma)}
        with guide.using_local_parameters(raw):
            out = guide(x, num_data, **kwargs)
        if not torch.is_grad_enabled():
            return out
        if guide.local_steps:
            # summed over the batch and scaled like the documents' terms (the data plate is
            # the guide's, entered once per trace)
            scale = 1.0 if num_data is None else num_data / x.shape[0]
            loss = guide.amortization_loss(encoder_raw[name], raw[name])  # [batch]
            pyro.factor(f"{name}_amortization", scale * (loss - loss.detach()).sum(),
                        has_rsample=True)
        if self.natural is not None:
            with torch.no_grad():
                gamma = guide.local_concentration(raw[name])  # [batch, K]
                scale = 1.0 if num_data is None else num_data / x.shape[0]
                targets = self.model.global_update(x, gamma, expected_logs, scale)
            self.natural.factor("natural_step", targets, x.shape[0], x,
                                guide.global_concentration)
        return out
