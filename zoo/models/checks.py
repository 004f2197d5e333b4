"""Argument checks for model and guide constructors, where each option is defined.

A constructor calls these on its arguments before it builds anything, so that nonsense
(``latent_dim=0``, ``num_topics=-3``, ``hidden_dims=400``, ``dropout=1.5``) is refused with a
``ValueError`` naming the option, from Python and from ``zoo train --model-opt`` alike, instead of
training a degenerate network or failing later inside torch:

    >>> count("latent_dim", 0)
    Traceback (most recent call last):
    ...
    ValueError: latent_dim must be an integer >= 1, got 0.
    >>> sizes("hidden_dims", [200, 200])
    (200, 200)
    >>> sizes("dims", 400)
    Traceback (most recent call last):
    ...
    ValueError: dims must be a list of layer widths (integers >= 1), e.g. dims=[400]; got 400.
"""

from __future__ import annotations

import math
import numbers


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def count(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int when it is an integer >= ``minimum``; else a ``ValueError``."""
    if not _is_integer(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def sizes(name: str, value, allow_empty: bool = False) -> tuple[int, ...]:
    """``value`` (a list or tuple of layer widths, each an integer >= 1) as a tuple."""
    ok = isinstance(value, (list, tuple)) and all(_is_integer(v) and v >= 1 for v in value)
    if not ok or (not value and not allow_empty):
        example = 400 if _is_integer(value) and value >= 1 else 100
        raise ValueError(f"{name} must be a list of layer widths (integers >= 1), e.g. "
                         f"{name}=[{example}]; got {value!r}.")
    return tuple(int(v) for v in value)


def positive(name: str, value) -> float:
    """``value`` as a float when it is a finite number > 0."""
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
    return float(value)


def probability(name: str, value) -> float:
    """A dropout rate: a number in [0, 1)."""
    if not _is_number(value) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}.")
    return float(value)


def choice(name: str, value, options: tuple) -> str:
    """``value`` when it is one of ``options`` (a model's named variants)."""
    if value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value
