r"""Scoring one cell of ``zoo compare``: the held-out figures the field reports, and posterior
draws as arviz ``InferenceData``.

Every cell is scored the same way, from its checkpoint, with one seed (:class:`Evaluation`):

- the held-out ELBO (``elbo_particles`` samples per data point,
  :func:`zoo.evaluation.heldout_elbo`);
- where every latent is local, the importance-sampled :math:`\log p(x)` with ``num_particles``
  guide particles, its Monte Carlo standard error, the ESS and PSIS :math:`\hat k`
  (:func:`zoo.infer.importance.log_likelihood`), the per-point estimates (for the pairing of
  :mod:`zoo.compare_report`), and :math:`\log p(x) - \text{ELBO}`, the whole inference gap;
- for topic models, perplexity (refined at fixed topics where the guide can be refined: LDA
  with ``dirichlet`` by default, the benchmark's 100 E-steps), NPMI, diversity, top words, and
  the *amortization gap*: :math:`\log \text{perplexity} - \log \text{refined perplexity}`, the
  nats per word that per-document optimization recovers over the encoder [1];
- for the other models whose latents are all local, with a guide that can be refined (the
  Gaussian family), the amortization gap in nats per data point, :math:`\mathrm{ELBO}(q^*) -
  \mathrm{ELBO}(q_\phi)` with :math:`q^*` refined per point (:mod:`zoo.infer.amortization`,
  ``refine_steps`` Adam steps, 200 by default), the refined ELBO, and the *approximation gap*
  :math:`\log p(x) - \mathrm{ELBO}(q^*)` [1]: the inference gap split in two;
- active units per local real site, :math:`\operatorname{Var}_x \mathbb{E}_q[z_u] > 10^{-2}`
  [2, Sec. 5.2], the mean a Monte Carlo average of 1,000 guide draws per point;
- posterior draws of a few held-out points, twice: from the guide, :math:`q(z \mid x)`, and from
  the model's posterior :math:`p(z \mid x)` by sampling-importance-resampling with the guide as
  proposal (:func:`zoo.infer.importance.sample_posterior`), both as ``InferenceData``.

**References:**

1. *Inference Suboptimality in Variational Autoencoders*, C. Cremer, X. Li, D. Duvenaud,
   ICML (2018), arXiv:1801.03558
2. *Importance Weighted Autoencoders*, Y. Burda, R. Grosse, R. Salakhutdinov (2015),
   arXiv:1509.00519
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import pyro
import torch
from pyro import poutine

from zoo.evaluation import batched, heldout_elbo
from zoo.infer.importance import log_likelihood, sample_posterior
from zoo.poutine import particles

#: an active unit's posterior mean varies over the data by more than this (Burda et al.)
ACTIVE_THRESHOLD = 1e-2


@dataclass(frozen=True)
class Evaluation:
    """How every cell is scored (all cells alike)."""

    num_particles: int = 1000  #: K of the importance-sampled log p(x); 0: not computed
    chunk_size: int = 500  #: particles drawn at a time
    batch_size: int = 50  #: data points at a time
    elbo_particles: int = 10  #: samples per data point of the held-out ELBO
    #: steps refining held-out posteriors; None: 100 for LDA + dirichlet, 0 for other topic
    #: models, 200 for other models with all-local latents and a refinable guide
    refine_steps: int | None = None
    refine_points: int = 200  #: held-out points refined for the amortization gap (0: none)
    posterior_points: int = 3  #: held-out points whose posterior is drawn (0: none)
    posterior_coords: int = 2  #: coordinates per site shown (the most active ones)
    posterior_samples: int = 500  #: draws of each posterior
    posterior_particles: int = 1000  #: importance particles behind the resampled draws
    seed: int = 0  #: seed of every Monte Carlo estimate

    def check(self) -> Evaluation:
        """Refuse a setting of the wrong type or out of range by name; return the evaluation itself.
        """
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "refine_steps" and value is None:
                continue
            minimum = 1 if f.name in ("chunk_size", "batch_size", "elbo_particles",
                                      "posterior_coords", "posterior_samples",
                                      "posterior_particles") else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"evaluation {f.name} must be an integer >= {minimum}, got "
                                 f"{value!r}.")
        return self


def training_times(history: list[dict]) -> dict:
    """Epochs, training seconds (wall and CPU of this process) and their means per epoch."""
    epochs = len(history)
    wall = sum(h["seconds"] for h in history)
    cpu = sum(h.get("cpu_seconds", math.nan) for h in history)
    return {"epochs": epochs, "train_seconds": wall, "cpu_seconds": cpu,
            "seconds_per_epoch": wall / epochs if epochs else math.nan,
            "cpu_seconds_per_epoch": cpu / epochs if epochs else math.nan}


def local_real_sites(model) -> list:
    """The model's local real-vector latent sites."""
    return [s for s in model.latent_sites() if s.local and s.support == "real"]


def all_local(model) -> bool:
    """Importance weights are per data point only when every latent is local."""
    return all(s.local for s in model.latent_sites())


@torch.no_grad()
def unit_variances(model, guide, split, num_samples: int = 1000, batch_size: int = 50) -> dict:
    r"""``{site: [D]}``: :math:`\operatorname{Var}_x \mathbb{E}_q[z_u \mid x]` of every unit of
    every local real site over ``split``, each mean over ``num_samples`` guide draws."""
    sites = local_real_sites(model)
    means = {s.name: [] for s in sites}
    for x in batched(split, batch_size):
        with particles(num_particles=num_samples, max_plate_nesting=model.max_plate_nesting):
            trace = poutine.trace(guide).get_trace(x)
        for s in sites:
            means[s.name].append(trace.nodes[s.name]["value"].mean(0))  # [B, D]
    return {name: torch.cat(m).var(0) for name, m in means.items()}


def score(model, guide, dataset, settings: Evaluation) -> dict:
    """Every held-out figure of one trained cell (see the module docstring); NaN-free keys only
    for what applies to the model."""
    from zoo import cli
    from zoo.topics import has_closed_form_refinement

    pyro.set_rng_seed(settings.seed)
    model.eval()
    guide.eval()
    result = {"heldout_elbo": heldout_elbo(model, guide, dataset.test,
                                           num_particles=settings.elbo_particles)}
    if settings.num_particles and all_local(model):
        estimate = log_likelihood(model, guide, dataset.test, settings.num_particles,
                                  settings.chunk_size, settings.batch_size)
        result.update(estimate.summary())
        result["pointwise_log_likelihood"] = estimate.log_likelihood.tolist()
        result["inference_gap"] = result["is_log_likelihood"] - result["heldout_elbo"]
    topic_model = dataset.kind == "text" and model.topic_model
    if topic_model:
        refine = settings.refine_steps
        if refine is None:
            refine = cli.default_refine_steps(model, guide)
        if refine and not (guide.refinable or has_closed_form_refinement(model, guide)):
            refine = 0  # nothing to refine: the guide exposes no local parameters
        topics = cli.extra_metrics(model, guide, dataset, refine_steps=refine)
        for key in ("perplexity", "perplexity_refined", "npmi", "diversity", "top_words",
                    "num_topics", "refine_steps"):
            if key in topics:
                result[key] = topics[key]
        if "perplexity_refined" in topics:
            result["amortization_gap"] = (math.log(topics["perplexity"])
                                          - math.log(topics["perplexity_refined"]))
    if local_real_sites(model):
        variances = unit_variances(model, guide, dataset.test, batch_size=settings.batch_size)
        result["active_units"] = {k: int((v > ACTIVE_THRESHOLD).sum()) for k, v in
                                  variances.items()}
        result["unit_variances"] = {k: v.tolist() for k, v in variances.items()}
    if not topic_model:
        # last, so that the figures above draw the random numbers they drew without it
        result.update(amortization(model, guide, dataset, settings, result))
    return result


def amortization(model, guide, dataset, settings: Evaluation, result: dict) -> dict:
    """The amortization gap of a model that is not a topic model, on the first
    ``refine_points`` held-out points, and the approximation gap beside the importance-sampled
    log p(x) of the same points (``{}`` where the guide cannot be refined or a latent is
    global)."""
    steps = 200 if settings.refine_steps is None else settings.refine_steps
    n = min(settings.refine_points, len(dataset.test))
    if not (steps and n and guide.refinable and all_local(model) and model.latent_sites()):
        return {}
    from zoo.infer.amortization import amortization_gap

    pointwise = result.get("pointwise_log_likelihood")
    gap = amortization_gap(model, guide, dataset.test.batch(torch.arange(n)), steps=steps,
                           batch_size=settings.batch_size,
                           log_likelihood=None if pointwise is None
                           else float(np.mean(pointwise[:n])))
    del gap["pointwise_amortization_gap"]
    return {**gap, "refine_points": n}


@torch.no_grad()
def guide_draws(model, guide, x: torch.Tensor, num_samples: int):
    """``num_samples`` draws of :math:`q(z \\mid x)` of every local latent site for each row of
    ``x``, as ``InferenceData`` with the dims :func:`~zoo.infer.importance.sample_posterior`
    uses (``data``, ``<site>_dim_0``, ...)."""
    import arviz as az

    with particles(num_particles=num_samples, max_plate_nesting=model.max_plate_nesting):
        trace = poutine.trace(guide).get_trace(x)
    posterior, dims = {}, {}
    for s in model.latent_sites():
        if s.local:
            posterior[s.name] = trace.nodes[s.name]["value"].cpu().numpy()[np.newaxis]
            dims[s.name] = ["data"] + [f"{s.name}_dim_{i}" for i in range(len(s.event_shape))]
    return az.from_dict(posterior=posterior, dims=dims, attrs={"draws_from": "guide q(z|x)"})


def posterior_draws(model, guide, dataset, settings: Evaluation):
    """``(q draws, p draws by resampling)`` of the first ``posterior_points`` held-out points,
    or ``None`` when a latent is global (joint weights: resampled draws degenerate) or none is
    asked for."""
    if not settings.posterior_points or not all_local(model) or not model.latent_sites():
        return None
    model.eval()
    guide.eval()
    n = min(settings.posterior_points, len(dataset.test))
    x = dataset.test.batch(torch.arange(n))
    pyro.set_rng_seed(settings.seed)
    q = guide_draws(model, guide, x, settings.posterior_samples)
    p = sample_posterior(model, guide, x, num_samples=settings.posterior_samples,
                         num_particles=settings.posterior_particles, seed=settings.seed)
    p.posterior.attrs["draws_from"] = ("model posterior p(z|x) by sampling-importance-"
                                       "resampling, the guide as proposal")
    return q, p


def forest_coords(result: dict, coords: int) -> dict:
    """``{site: [unit, ...]}``: each local real site's ``coords`` most active units (largest
    variance of the posterior mean over the test set)."""
    return {site: np.argsort(-np.asarray(v), kind="stable")[:coords].tolist()
            for site, v in (result.get("unit_variances") or {}).items()}
