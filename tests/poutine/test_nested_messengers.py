import pyro
import pyro.distributions as dist
import pytest
import torch

from zoo.infer.resampling import log_mean_exp, resample_ancestors
from zoo.poutine.nested_resample_messenger import nested_resample
from zoo.poutine.nested_score_messenger import nested_score


def test_score_sums_sites_per_particle_and_scales():
    loc = torch.randn(5, 3)
    obs = torch.randn(5, 3)
    with pyro.plate("particles", 5, dim=-1):
        with nested_score() as score:
            z = pyro.sample("z", dist.Normal(loc, 2.0).to_event(1))
            with pyro.poutine.scale(scale=0.5):
                pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=obs)
            pyro.factor("bonus", torch.arange(5.0))
    expected_z = dist.Normal(loc, 2.0).log_prob(z).sum(-1)
    expected_x = 0.5 * dist.Normal(z, 1.0).log_prob(obs).sum(-1)
    assert torch.allclose(score.site_log_probs["z"], expected_z)
    assert torch.allclose(score.site_log_probs["x"], expected_x)
    assert torch.allclose(score.log_prob, expected_z + expected_x + torch.arange(5.0))


def test_score_with_particles_on_an_outer_dim():
    with pyro.plate("particles", 4, dim=-2), pyro.plate("data", 3, dim=-1):
        with nested_score(particle_dim=-2) as score:
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
    assert z.shape == (4, 3)
    assert torch.allclose(score.log_prob, dist.Normal(0.0, 1.0).log_prob(z).sum(-1))


def test_stl_keeps_only_the_pathwise_gradient():
    loc = torch.tensor([0.3, -0.2], requires_grad=True)
    scale = torch.tensor([1.5, 0.7], requires_grad=True)
    with pyro.plate("particles", 6, dim=-1):
        with nested_score(stl=True) as score:
            z = pyro.sample("z", dist.Normal(loc, scale).to_event(1))
    eps = ((z - loc) / scale).detach()
    score.log_prob.sum().backward()
    # d/dloc log N(loc + scale eps; sg loc, sg scale) = -eps / scale, summed over particles.
    assert torch.allclose(loc.grad, (-eps / scale.detach()).sum(0), atol=1e-5)
    assert torch.allclose(scale.grad, (-eps**2 / scale.detach()).sum(0), atol=1e-5)


def test_unreparameterized_draws_carry_no_path_gradient():
    loc = torch.zeros(2, requires_grad=True)
    with pyro.plate("particles", 6, dim=-1):
        with nested_score(reparameterized=False) as score:
            z = pyro.sample("z", dist.Normal(loc, 1.0).to_event(1))
    assert not z.requires_grad
    score.log_prob.sum().backward()
    assert torch.allclose(loc.grad, z.sum(0))  # the score function d log N / d loc


@pytest.mark.parametrize("method", ["systematic", "multinomial"])
def test_resample_messenger_keeps_z_hat_and_gathers_values(method):
    torch.manual_seed(0)
    log_w = torch.randn(10) * 2
    values = torch.arange(20.0).reshape(10, 2)
    indices, resampled = resample_ancestors(log_w, method)
    with pyro.plate("particles", 10, dim=-1):
        with nested_resample(indices=indices):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1), obs=values)
            fresh = pyro.sample("fresh", dist.Normal(0.0, 1.0))
    assert torch.equal(z, values[indices])
    assert fresh.shape == (10,)  # sampled sites are left alone
    assert torch.allclose(resampled, log_mean_exp(log_w).expand(10))
    assert log_mean_exp(resampled).item() == pytest.approx(log_mean_exp(log_w).item())


def test_systematic_resampling_counts_are_floor_or_ceil_of_expected():
    torch.manual_seed(1)
    values = torch.arange(50.0)
    for _ in range(20):
        log_w = torch.randn(50) * 3
        expected = 50 * torch.softmax(log_w, 0)
        indices, _ = resample_ancestors(log_w)
        with pyro.plate("particles", 50, dim=-1):
            with nested_resample(indices=indices):
                z = pyro.sample("z", dist.Normal(0.0, 1.0), obs=values)
        counts = torch.bincount(z.long(), minlength=50).float()
        assert torch.equal(z, values[indices])
        assert torch.all(counts >= expected.floor() - 1e-6)
        assert torch.all(counts <= expected.ceil() + 1e-6)


def test_resample_errors_say_what_to_do():
    with pytest.raises(ValueError, match="indices"):
        nested_resample()
    with pytest.raises(ValueError, match="num_particles"):
        resample_ancestors(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="num_particles"):
        nested_resample(indices=torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="multinomial"):
        resample_ancestors(torch.zeros(3), "stratified")
    three = torch.zeros(3, dtype=torch.long)
    with pytest.raises(ValueError, match="particle dimension"):
        with pyro.plate("particles", 4, dim=-1), nested_resample(indices=three):
            pyro.sample("z", dist.Normal(0.0, 1.0), obs=torch.zeros(4))
