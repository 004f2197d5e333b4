r"""The mean-field ELBO (``--elbo meanfield``), computing only the terms it uses.

Kingma & Welling's estimator B [1]: with the guide factorized like the model's latents, the KL
term of each latent site is analytic where a closed form is registered, and only the likelihood
is estimated by Monte Carlo,

.. math::

    \mathcal{L}(x) = \mathbb{E}_{q(z \mid x)}[\log p(x \mid z)]
        - \sum_s \mathrm{KL}\big(q(z_s \mid \cdot)\,\|\,p(z_s \mid \cdot)\big).

This is Pyro's :class:`~pyro.infer.TraceMeanField_ELBO`, with the same value and gradient
(tested). Pyro's version goes through ``get_importance_trace``, which computes every site's
log-density and the guide's score parts, copies both traces to drop subsample sites, and then
uses none of the latent sites' densities whose KL is analytic; it also calls ``.item()`` on the
loss twice per step. Here each term is computed only when the estimator needs it: about 0.5 ms
per step of a small VAE, a twentieth of the step (``benchmarks/train_throughput.py``).

With Pyro's validation on (``pyro.enable_validation(True)``, as in the tests), the objective is
Pyro's own code path, with every model/guide check it makes. With ``jit=True``
(``objective_options={"jit": True}``) the loss module replays a trace of this lean path
(:mod:`zoo.infer.traced`): the same loss and gradients without Pyro's per-step Python.

**References:**

1. *Auto-Encoding Variational Bayes*, D. P. Kingma, M. Welling (2013), arXiv:1312.6114
"""

from __future__ import annotations

import torch
from pyro import poutine
from pyro.distributions.kl import kl_divergence
from pyro.distributions.util import scale_and_mask
from pyro.infer import TraceMeanField_ELBO
from pyro.infer.util import is_validation_enabled, torch_item
from pyro.poutine.util import site_is_subsample

from zoo.infer.traced import JitOption


def _log_prob_sum(site) -> torch.Tensor:
    """The scaled and masked log-density of one trace site, summed (Pyro's ``log_prob_sum``)."""
    log_p = site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"])
    return scale_and_mask(log_p, site["scale"], site["mask"]).sum()


def _kl_sum(guide_site, model_site) -> torch.Tensor | None:
    """The scaled KL(q || p) of one latent site, summed; None where no closed form exists."""
    try:
        kl = kl_divergence(guide_site["fn"], model_site["fn"])
    except NotImplementedError:
        return None
    kl = scale_and_mask(kl, guide_site["scale"], guide_site["mask"])
    if torch.is_tensor(kl):
        return kl.sum()
    return kl * torch.Size(guide_site["fn"].batch_shape).numel()


def _sample_sites(trace):
    return ((name, site) for name, site in trace.nodes.items()
            if site["type"] == "sample" and not site_is_subsample(site))


class MeanFieldELBO(JitOption, TraceMeanField_ELBO):
    """:class:`~pyro.infer.TraceMeanField_ELBO` without the work it discards; same arguments,
    and ``jit`` (default ``False``): the loss module replays a trace
    (:class:`~zoo.infer.traced.TracedLoss`)."""

    def _get_trace(self, model, guide, args, kwargs):
        if is_validation_enabled():
            return super()._get_trace(model, guide, args, kwargs)
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
        return model_trace, guide_trace

    def _negative_elbo_particle(self, model_trace, guide_trace) -> torch.Tensor:
        """-ELBO of one particle from two traces that hold no log-densities yet."""
        elbo = 0.0
        for name, model_site in _sample_sites(model_trace):
            if model_site["is_observed"]:
                elbo = elbo + _log_prob_sum(model_site)
                continue
            guide_site = guide_trace.nodes[name]
            kl = _kl_sum(guide_site, model_site)
            if kl is None:  # Monte Carlo: log p(z) - log q(z), z reparameterized
                elbo = elbo + _log_prob_sum(model_site) - _log_prob_sum(guide_site)
            else:
                elbo = elbo - kl
        for name, guide_site in _sample_sites(guide_trace):
            if name not in model_trace.nodes:  # auxiliary guide sites: their entropy
                elbo = elbo - _log_prob_sum(guide_site)
        return -elbo

    def differentiable_loss(self, model, guide, *args, **kwargs):
        if is_validation_enabled():
            return super().differentiable_loss(model, guide, *args, **kwargs)
        # One trace per particle, or one vectorized trace holding all of them: either way the
        # sum over traces is num_particles times the mean.
        loss = None
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            particle = self._negative_elbo_particle(model_trace, guide_trace)
            loss = particle if loss is None else loss + particle
        return loss if self.num_particles == 1 else loss / self.num_particles

    # Pyro's loss() and loss_and_grads() read the log-densities that get_importance_trace
    # stored; the lean traces have none, so both go through differentiable_loss.
    def loss(self, model, guide, *args, **kwargs):
        if is_validation_enabled():
            return super().loss(model, guide, *args, **kwargs)
        with torch.no_grad():
            return torch_item(self.differentiable_loss(model, guide, *args, **kwargs))

    def loss_and_grads(self, model, guide, *args, **kwargs):
        """For ``pyro.infer.SVI`` with the global param store."""
        if is_validation_enabled():
            return super().loss_and_grads(model, guide, *args, **kwargs)
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward(retain_graph=self.retain_graph)
        return torch_item(loss)
