import math

import pyro
import pytest
import torch

from zoo.models.targets import (
    INIT_SCALES,
    AnnealedDensity,
    Banana,
    Funnel,
    GaussianTarget,
    GeometricPath,
    RingGMM,
    annealed_target,
    get_target,
)
from zoo.poutine.nested_score_messenger import nested_score


def _grid_log_z(log_density, lo, hi, num=1201):
    """log of a 2-d trapezoid-free Riemann sum on a regular grid (float64)."""
    xs = torch.linspace(lo[0], hi[0], num, dtype=torch.float64)
    ys = torch.linspace(lo[1], hi[1], num, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="ij"), -1)  # (num, num, 2)
    cell = (xs[1] - xs[0]) * (ys[1] - ys[0])
    return (torch.logsumexp(log_density(grid).flatten(), 0) + torch.log(cell)).item()


@pytest.mark.parametrize(
    "target, lo, hi",
    [
        (RingGMM(), (-15.0, -15.0), (15.0, 15.0)),
        (Banana(a=2.0, b=0.5), (-14.0, -10.0), (14.0, 50.0)),
        (GaussianTarget([1.0, -2.0], [0.5, 2.0], log_z=1.3), (-5.0, -16.0), (7.0, 12.0)),
    ],
)
def test_log_z_matches_grid_quadrature(target, lo, hi):
    assert _grid_log_z(target.log_density, lo, hi) == pytest.approx(target.log_z, abs=1e-3)


def test_funnel_log_z_by_quadrature_on_a_scaled_grid():
    # The funnel's x-width is exp(v/2): integrate x on a grid scaled per v, then v on a grid.
    funnel = Funnel(sigma=3.0)
    v = torch.linspace(-27.0, 27.0, 2001, dtype=torch.float64)  # 9 sigma
    u = torch.linspace(-10.0, 10.0, 801, dtype=torch.float64)
    x = u[None, :] * torch.exp(v[:, None] / 2)  # (V, U)
    z = torch.stack([v[:, None].expand_as(x), x], -1)
    inner = torch.logsumexp(funnel.log_density(z), -1) + torch.log((u[1] - u[0]) * torch.exp(v / 2))
    log_z = torch.logsumexp(inner, 0) + torch.log(v[1] - v[0])
    assert log_z.item() == pytest.approx(funnel.log_z, abs=1e-3)


def test_ring_is_an_unweighted_mixture_with_modes_on_the_circle():
    ring = RingGMM()
    assert ring.log_z == pytest.approx(math.log(8))
    assert torch.allclose(ring.locs.norm(dim=-1), torch.full((8,), 10.0))
    # At a mode the density is one normalized 2-d Gaussian N(0; 0, 0.5 I), the others negligible.
    assert ring.log_density(ring.locs[0]).item() == pytest.approx(-math.log(2 * math.pi * 0.5))


@pytest.mark.parametrize("name", ["ring", "banana", "funnel"])
def test_geometric_path_endpoints(name):
    target = get_target(name)
    path = GeometricPath(target, INIT_SCALES[name])
    z = torch.randn(7, 2) * 3
    init = torch.distributions.Normal(0.0, INIT_SCALES[name]).log_prob(z).sum(-1)
    assert torch.allclose(path.log_density(z, 0.0), init, atol=1e-5)
    assert torch.allclose(path.log_density(z, 1.0), target.log_density(z), atol=1e-5)
    half = 0.5 * init + 0.5 * target.log_density(z)
    assert torch.allclose(path.log_density(z, torch.tensor(0.5)), half, atol=1e-5)


def test_annealed_target_program_scores_per_particle():
    path = GeometricPath(RingGMM(), 5.0)
    z = torch.randn(11, 2)
    with pyro.plate("particles", 11, dim=-1):
        with nested_score() as score:
            annealed_target(path, 0.3, z, name="z")
    assert score.log_prob.shape == (11,)
    assert torch.allclose(score.log_prob, path.log_density(z, 0.3))


def test_annealed_density_cannot_be_sampled_and_unknown_target_lists_names():
    with pytest.raises(NotImplementedError, match="condition"):
        AnnealedDensity(GeometricPath(RingGMM()), 0.5).sample()
    with pytest.raises(ValueError, match="banana, funnel, ring"):
        get_target("donut")
