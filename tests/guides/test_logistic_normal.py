"""The logistic-normal guide's additive logistic map (guides/logistic_normal.py)."""

import torch
from pyro.distributions import constraints

from guides.logistic_normal import AdditiveLogisticTransform, logistic_normal


def test_peaked_rows_over_thousands_of_words_are_valid_simplices():
    # LDA's topics on Reuters (V = 4,258), peaked as after training: in float32 9 rows of these
    # 2,000 summed to 1 only within 1.4e-6, and Pyro's validation refused the sample.
    u = 5 * torch.randn(2000, 4257, generator=torch.Generator().manual_seed(0))
    theta = AdditiveLogisticTransform()(u)
    assert theta.dtype == torch.float32
    assert bool(constraints.simplex.check(theta).all())
    assert float(theta.min()) > 0  # clamped at the smallest normal float, never 0


def test_log_density_matches_the_change_of_variables():
    loc, scale = torch.randn(3, 4), torch.rand(3, 4) + 0.5
    q = logistic_normal(loc, scale)
    theta = q.sample()
    u = AdditiveLogisticTransform().inv(theta)
    base = torch.distributions.Normal(loc, scale).log_prob(u).sum(-1)
    # |det J| of u -> softmax([u, 0]) restricted to K - 1 coordinates is prod_k theta_k
    assert torch.allclose(q.log_prob(theta), base - theta.log().sum(-1), atol=1e-4)
