r"""The importance weighted autoencoder bound (IWAE), per data point, with DReG gradients.

With K particles :math:`z_{1..K} \sim q_\phi(\cdot \mid x_n)` drawn in a vectorized particle
plate and :math:`w_{k,n} = p_\theta(x_n, z_{k,n}) / q_\phi(z_{k,n} \mid x_n)` [1, Eq. 8],

.. math::

    \mathcal{L}_K = \sum_n \mathbb{E}\Big[\log \frac1K \sum_{k=1}^K w_{k,n}\Big], \qquad
    \mathcal{L}_1 = \mathrm{ELBO} \le \mathcal{L}_K \le \mathcal{L}_{K+1} \le \log p(x).

The log-mean-exp is taken **per data point** whenever every latent is local, decided from the
data plate by name (Pyro's ``RenyiELBO(alpha=0)`` agrees on such models, and falls back to one
joint weight per batch as soon as any site sits outside the plates, see
``notes/pyro-anchors.md`` 5.6); under minibatching the sum over the batch is scaled by
``num_data / batch_size``. With a global latent the weight of a particle is joint,
:math:`\log w_k = \log w^{\text{global}}_k + s \sum_n \log w_{k,n}` with that scale s.

**DReG** (``dreg=True``, or the name ``iwae-dreg``) replaces the guide gradient, whose score
term makes the signal-to-noise ratio of the IWAE encoder gradient vanish as
:math:`O(1/\sqrt K)` [2], by the doubly reparameterized estimator [3, Eq. 5]

.. math::

    \nabla_\phi \mathcal{L}_K \approx \sum_k \tilde w_k^{\,2}\;
        \frac{\partial \log w_k}{\partial z_k} \frac{\partial z_k}{\partial \phi},
    \qquad \tilde w_k = \frac{w_k}{\sum_j w_j},

implemented as the surrogate :math:`\sum_k \mathrm{sg}(\tilde w_k^2)\,
\log w_k(\mathrm{sg}\,\theta, z_k(\phi), \mathrm{sg}\,\phi)` (parameters detached with
``torch.func.functional_call``) plus the plain IWAE bound at detached :math:`z` for the model
gradient. The loss value is the IWAE bound in both cases. DReG runs model and guide twice per
step (a guide with BatchNorm in training mode updates its running statistics twice). Guide sites
must be reparameterizable; for discrete latents use ``tracegraph``.

**References:**

1. *Importance Weighted Autoencoders*, Y. Burda, R. Grosse, R. Salakhutdinov (2015),
   arXiv:1509.00519
2. *Tighter Variational Bounds are Not Necessarily Better*, T. Rainforth, A. R. Kosiorek,
   T. A. Le, C. J. Maddison, M. Igl, F. Wood, Y. W. Teh (2018), arXiv:1802.04537
3. *Doubly Reparameterized Gradient Estimators for Monte Carlo Objectives*, G. Tucker,
   D. Lawson, S. Gu, C. J. Maddison (2018), arXiv:1810.04152
"""

from __future__ import annotations

import torch
from pyro import poutine
from pyro.infer import ELBO
from pyro.poutine.util import site_is_subsample
from torch.func import functional_call

from zoo.infer.importance import particle_log_weights
from zoo.infer.objectives import register_objective
from zoo.infer.resampling import log_mean_exp
from zoo.infer.traced import JitOption
from zoo.poutine import LogWeightMessenger, max_plate_nesting, particles


def _detached_call(module):
    """``module`` run with every parameter detached (gradients flow through inputs only)."""
    params = {name: p.detach() for name, p in module.named_parameters()}
    buffers = dict(module.named_buffers())

    def fn(*args, **kwargs):
        return functional_call(module, {**params, **buffers}, args, kwargs, strict=False)

    return fn


def _check_reparameterized(guide_trace):
    for name, site in guide_trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"] or site_is_subsample(site):
            continue
        if not site["fn"].has_rsample:
            raise ValueError(
                f"IWAE needs reparameterized guide sites, but '{name}' "
                f"({type(site['fn']).__name__}) is not; train it with --elbo tracegraph."
            )


def iwae_bound(weights: LogWeightMessenger, local: torch.Tensor | None = None,
               glob: torch.Tensor | None = None) -> torch.Tensor:
    """:math:`\\mathcal{L}_K` from accumulated log weights (``local [K, B]``, ``glob [K]``),
    scaled to the full data set."""
    local = weights.local if local is None else local
    glob = weights.glob if glob is None else glob
    scale = weights.data_scale
    if weights.has_global:
        lw = glob + (scale * local.sum(-1) if weights.has_local else 0.0)  # [K]
        return log_mean_exp(lw.expand(weights.num_particles), 0)
    return scale * log_mean_exp(local, 0).sum()  # per data point, then summed


class IWAE(JitOption, ELBO):
    """:param int num_particles: K
    :param bool dreg: use the doubly reparameterized guide gradient
    :param int max_plate_nesting: guessed from one run when not given
    :param bool jit: the loss module replays a trace of the loss
        (:class:`~zoo.infer.traced.TracedLoss`; pass ``max_plate_nesting``; not with ``dreg``)
    """

    def __init__(self, num_particles: int = 5, dreg: bool = False,
                 max_plate_nesting: float = float("inf"), jit=False):
        if dreg and jit:
            raise ValueError("iwae-dreg cannot take jit=True: its detached-parameter passes use "
                             "torch.func.functional_call, which TorchScript tracing refuses. "
                             "Use jit with iwae or meanfield, or train iwae-dreg without it.")
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting,
                         vectorize_particles=True, jit=jit)
        self.dreg = dreg

    def _setup(self, model, guide, args, kwargs):
        if self.max_plate_nesting == float("inf"):
            self.max_plate_nesting = max_plate_nesting(model, guide, *args, **kwargs)
        return int(self.max_plate_nesting), getattr(model, "plate_name", "data")

    def differentiable_loss(self, model, guide, *args, **kwargs):
        """The negative IWAE bound as a differentiable tensor: log-mean-exp over the particles per
        data point, summed and scaled to the full data set (its DReG surrogate with ``dreg=True``).
        """
        mpn, plate = self._setup(model, guide, args, kwargs)
        if not self.dreg:
            weights, guide_trace = particle_log_weights(
                model, guide, args, kwargs, self.num_particles, mpn, plate
            )
            _check_reparameterized(guide_trace)
            return -iwae_bound(weights)
        return -self._dreg_surrogate(model, guide, args, kwargs, mpn, plate)

    def _dreg_surrogate(self, model, guide, args, kwargs, mpn, plate):
        k, pdim = self.num_particles, -(mpn + 1)

        def score(fn, trace):
            w = LogWeightMessenger(None, k, pdim, plate)  # log density of fn's own sites
            with w:
                poutine.replay(fn, trace=trace)(*args, **kwargs)
            return w

        with particles(num_particles=k, max_plate_nesting=mpn):
            guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
            _check_reparameterized(guide_trace)
            detached = guide_trace.copy()  # shares the site dicts: replace, never mutate them
            for name, site in guide_trace.nodes.items():
                if site["type"] == "sample" and not site_is_subsample(site):
                    detached.nodes[name] = dict(site, value=site["value"].detach())
            p_model = score(model, detached)  # log p_theta(x, sg z): model gradient
            p_path = score(_detached_call(model), guide_trace)  # log p_sg(theta)(x, z(phi))
            q_path = score(_detached_call(guide), guide_trace)  # log q_sg(phi)(z(phi))
        lw_local = p_path.local - q_path.local  # [K, B] (or 0. without local sites)
        lw_glob = p_path.glob - q_path.glob  # [K] (or 0.)
        bound_model = iwae_bound(
            p_model, p_model.local - q_path.local.detach(), p_model.glob - q_path.glob.detach()
        )
        # sg(w~^2) log w: per data point, or per particle with the joint weight
        if p_path.has_global:
            lw = lw_glob + (p_path.data_scale * lw_local.sum(-1) if p_path.has_local else 0.0)
            guide_term = (torch.softmax(lw.detach(), 0) ** 2 * lw).sum()
        else:
            w2 = torch.softmax(lw_local.detach(), 0) ** 2  # [K, B]
            guide_term = p_path.data_scale * (w2 * lw_local).sum()
        surrogate = bound_model + guide_term
        return surrogate - surrogate.detach() + bound_model.detach()

    def _get_trace(self, model, guide, args, kwargs):
        raise NotImplementedError("IWAE weighs vectorized particles; it has no per-trace form")

    def loss(self, model, guide, *args, **kwargs) -> float:
        """The negative IWAE bound, as a float (no gradients)."""
        with torch.no_grad():
            return self.differentiable_loss(model, guide, *args, **kwargs).item()

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """The negative IWAE bound, back-propagated; returns it as a float."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward(retain_graph=self.retain_graph)
        return loss.item()


@register_objective("iwae")
def _iwae(num_particles: int = 5, **options) -> IWAE:
    return IWAE(num_particles=num_particles, **options)


@register_objective("iwae-dreg")
def _iwae_dreg(num_particles: int = 5, **options) -> IWAE:
    return IWAE(num_particles=num_particles, dreg=True, **options)
