"""Corpora with known topics, and how learned topics are matched to them (shared by the
topic-recovery tests)."""

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def lda_counts(topics: torch.Tensor, num_docs: int, length: int, alpha: float,
               seed: int = 0) -> torch.Tensor:
    """Word counts ``[D, V]`` of ``num_docs`` documents of ``length`` words drawn from LDA with
    the given ``topics [K, V]`` and proportions ~ Dir(``alpha``), seeded."""
    gen = torch.Generator().manual_seed(seed)
    theta = torch._sample_dirichlet(torch.full((num_docs, topics.shape[0]), alpha), generator=gen)
    words = torch.multinomial(theta @ topics, length, replacement=True, generator=gen)  # [D, L]
    return torch.zeros(num_docs, topics.shape[1]).scatter_add_(
        1, words, torch.ones_like(words, dtype=torch.float))


def matched_cosines(true, learned) -> np.ndarray:
    """Cosine similarity of each true topic with its Hungarian-matched learned topic."""
    a = true / true.norm(dim=-1, keepdim=True)
    b = learned / learned.norm(dim=-1, keepdim=True)
    cos = (a @ b.T).numpy()
    rows, cols = linear_sum_assignment(-cos)
    return cos[rows, cols]
