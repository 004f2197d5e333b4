r"""A traced training loss: the objective's Python run once per input signature and replayed as
a TorchScript graph, as Pyro's ``JitTrace_ELBO`` does [1].

A step of a small model on a GPU takes a few milliseconds of kernels, and Pyro's Python around
them (handlers, plates, distribution objects, the KL dispatch) takes as long again: a GPU
exposes it. :class:`TracedLoss` runs the loss once under ``torch.jit.trace`` with the model's
and guide's parameters and buffers as the graph's inputs, and from then on calls the recorded
graph: the same tensor operations in the same order, random draws included (they are graph
nodes and draw fresh numbers from torch's generators on every call), without the Python.

What makes it the *same* loss, tested on the CPU bit for bit against the plain path
(``tests/infer/test_traced.py``): the graph runs without TorchScript's optimizing passes
(``torch.jit.optimized_execution(False)``), so every operation and its autograd formula are
eager PyTorch's; the trace's own run draws nothing and changes nothing (torch's generators
and every buffer, BatchNorm statistics included, are restored after it); and a graph is kept
per *signature*, the things that Python decided while tracing: the batch's shape, type and
device, ``num_data``, train/eval mode of model and guide, and their annealed quantities
(:meth:`~zoo.models.base.ZooModule.annealed_state`). The last, smaller batch of an epoch gets
its own graph.

``jit="optimized"`` runs the graph through TorchScript's optimizing executor instead: it
profiles the first calls, then differentiates subgraphs symbolically and, where the backend
fuses kernels (CUDA), fuses chains of elementwise operations into one kernel, which is fewer
kernel launches per step on a GPU. Its autograd formulas are TorchScript's, so the gradients
agree with the plain path to rounding (tested to 1e-5 relative), not bit for bit.

The plain path is taken, with one warning, where a graph would be wrong: Pyro's validation on
(its checks read values back on the host), an effect handler around the call (KL warm-up's
:func:`~zoo.poutine.latent_scale_messenger.scale_latents`, whose weight changes every step),
or gradients off. Objectives whose loss reads a value back on the host while computing it
(Pyro's ``Trace_ELBO`` adds ``loss - loss.item()``) cannot be traced; ``meanfield`` and
``iwae`` take ``jit=True`` (``fit(..., objective_options={"jit": True})``; ``iwae-dreg``
refuses it, its passes with detached parameters use ``torch.func``, which tracing refuses). A
pair whose loss cannot be traced stops with an error naming it: torch's closed-form KL of a
low-rank Gaussian from a full-covariance one (``ctm`` with ``low_rank_normal``) reads shapes as
integers, which a trace records as tensors (the full-covariance KLs of ``guides/ctf.py`` read
them as integers, and trace).

**References:**

1. Pyro, ``pyro/infer/trace_elbo.py`` (``JitTrace_ELBO``) and ``pyro/ops/jit.py``
"""

from __future__ import annotations

import warnings

import torch
from pyro.infer.util import is_validation_enabled
from pyro.poutine.runtime import _PYRO_STACK
from torch import nn

from zoo.models.base import ZooModule


class TracedLoss(nn.Module):
    """The loss module ``elbo(model, guide)`` would be, its forward replayed from a trace.

    Like Pyro's ``ELBOModule`` its only children are ``model`` and ``guide`` (a checkpoint of
    it is theirs), and ``forward(x, num_data=None)`` is ``elbo.differentiable_loss(model,
    guide, x, num_data=num_data)``.

    :ivar int traced_calls: calls answered by a graph
    :ivar int plain_calls: calls that ran the objective's Python (see the module docstring)
    """

    def __init__(self, model: nn.Module, guide: nn.Module, elbo, optimize: bool = False):
        super().__init__()
        self.model, self.guide, self.elbo = model, guide, elbo
        self.optimize = bool(optimize)
        self._graphs: dict = {}
        self._warned: set[str] = set()
        self.traced_calls = self.plain_calls = 0

    def plain(self, x, num_data=None):
        """The objective's own Python: the path the graph replays."""
        return self.elbo.differentiable_loss(self.model, self.guide, x, num_data=num_data)

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        """The loss of the batch ``x``, from a traced graph of the step when one applies, else from
        the plain loss module."""
        reason = self._why_plain()
        if reason is not None:
            self._warn_once(reason)
            self.plain_calls += 1
            return self.plain(x, num_data)
        tensors = self._state_tensors()
        key = self._signature(x, num_data, tensors)
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._graphs[key] = self._trace(x, num_data, tensors)
        self.traced_calls += 1
        with torch.jit.optimized_execution(self.optimize):
            return graph(x, *tensors)

    # ------------------------------------------------------------------------------ helpers
    def _why_plain(self) -> str | None:
        if is_validation_enabled():
            return ("Pyro's validation is on (its checks read values on the host); "
                    "pass validate=False (zoo train's default) to replay the trace")
        if _PYRO_STACK:
            return ("an effect handler is active around the loss (e.g. KL warm-up's weight, "
                    "which changes every step)")
        if not torch.is_grad_enabled():
            return "gradients are off"
        return None

    def _warn_once(self, reason: str) -> None:
        if reason not in self._warned:
            self._warned.add(reason)
            warnings.warn(f"jit=True: the loss runs without its trace while {reason}.",
                          UserWarning, stacklevel=5)  # the module's caller

    def _state_tensors(self) -> list[torch.Tensor]:
        """Parameters then buffers of model and guide, in a fixed order: the graph's inputs
        after the batch (buffers too, so that BatchNorm's statistics are updated in place)."""
        seen, out = set(), []
        for module in (self.model, self.guide):
            for t in (*module.parameters(), *module.buffers()):
                if id(t) not in seen:
                    seen.add(id(t))
                    out.append(t)
        return out

    def _signature(self, x, num_data, tensors) -> tuple:
        annealed = tuple(tuple(sorted(m.annealed_state().items()))
                         if isinstance(m, ZooModule) else () for m in (self.model, self.guide))
        return (tuple(x.shape), x.dtype, x.device, x.layout, num_data, self.model.training,
                self.guide.training, annealed,
                tuple((id(t), t.shape, t.dtype, t.device, t.requires_grad) for t in tensors))

    def _trace(self, x, num_data, tensors):
        """Record the loss as a function of ``(x, *tensors)``. The tracing run is undone: the
        random streams it drew from and the buffers it updated are restored."""
        buffers = [t for t in tensors if not isinstance(t, nn.Parameter)]
        saved = [b.detach().clone() for b in buffers]
        devices = sorted({t.device.index or 0 for t in (x, *tensors) if t.device.type == "cuda"})
        elbo, model, guide = self.elbo, self.model, self.guide

        def loss(x, *_):  # the tensors it reads are the graph's inputs (same objects)
            return elbo.differentiable_loss(model, guide, x, num_data=num_data)

        try:
            with torch.random.fork_rng(devices=devices), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TracerWarnings: shapes are in the signature
                graph = torch.jit.trace(loss, (x, *tensors), check_trace=False)
        except Exception as error:
            raise RuntimeError(
                f"jit=True could not trace the loss of model '{_name(model)}' with guide "
                f"'{_name(guide)}' ({type(error).__name__}: {error}); train without jit."
            ) from error
        finally:
            with torch.no_grad():
                for buffer, value in zip(buffers, saved):
                    buffer.copy_(value)
        return graph


def _name(module) -> str:
    return getattr(module, "registry_name", type(module).__name__)


JIT_MODES = {False: None, True: "exact", "exact": "exact", "optimized": "optimized"}


class JitOption:
    """Mixin for :class:`pyro.infer.ELBO` subclasses: a ``jit`` constructor option (``False``;
    ``True`` or ``"exact"``; ``"optimized"``), and ``elbo(model, guide)`` a
    :class:`TracedLoss` when it is on."""

    def __init__(self, *args, jit=False, **kwargs):
        super().__init__(*args, **kwargs)
        try:
            self.jit = JIT_MODES[jit]
        except (KeyError, TypeError):
            raise ValueError(f"jit must be False, True ('exact') or 'optimized', got "
                             f"{jit!r}.") from None

    def __call__(self, model, guide):
        if self.jit is not None:
            return TracedLoss(model, guide, self, optimize=self.jit == "optimized")
        return super().__call__(model, guide)


__all__ = ["JIT_MODES", "JitOption", "TracedLoss"]
