import pyro.distributions as dist
import pytest
import torch
from torch.distributions import kl_divergence

from guides.householder import HouseholderNormal
from zoo.registry import get_guide, get_model


def test_reflections_preserve_norms_and_have_zero_log_det():
    torch.manual_seed(0)
    loc, scale = torch.randn(5, 6), torch.rand(5, 6) + 0.1
    q = HouseholderNormal(loc, scale, torch.randn(5, 3, 6))
    transform = q.transforms[0]
    x = torch.randn(5, 6)
    y = transform(x)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(transform.inv(y), x)
    assert (transform.log_abs_det_jacobian(x, y) == 0).all()
    # U = H_T ... H_1 is orthogonal: columns of U applied to the identity
    eye = torch.eye(6).expand(5, 6, 6).transpose(0, 1)  # [6 (basis), 5 (batch), 6]
    u = transform(eye).transpose(0, 1)  # [5, 6, 6], rows are U e_i
    torch.testing.assert_close(u @ u.transpose(-1, -2), torch.eye(6).expand(5, 6, 6))


def test_density_is_the_base_density_of_the_inverse_image():
    torch.manual_seed(1)
    loc, scale = torch.randn(4, 3), torch.rand(4, 3) + 0.2
    q = HouseholderNormal(loc, scale, torch.randn(4, 2, 3))
    z = q.rsample()
    z0 = q.transforms[0].inv(z)
    torch.testing.assert_close(q.log_prob(z), q.base_normal.log_prob(z0))
    # and equals the full-covariance Gaussian N(U loc, U diag(scale^2) U^T)
    eye = torch.eye(3).expand(4, 3, 3).transpose(0, 1)
    u = q.transforms[0](eye).permute(1, 2, 0)  # [4, 3, 3], columns U e_i
    mvn = dist.MultivariateNormal(
        (u @ loc.unsqueeze(-1)).squeeze(-1), u @ torch.diag_embed(scale**2) @ u.transpose(-1, -2)
    )
    torch.testing.assert_close(q.log_prob(z), mvn.log_prob(z), rtol=1e-4, atol=1e-4)


def test_kl_to_isotropic_prior_is_analytic_and_matches_monte_carlo():
    torch.manual_seed(2)
    loc, scale = torch.randn(3, 4), torch.rand(3, 4) + 0.3
    q = HouseholderNormal(loc, scale, torch.randn(3, 2, 4))
    p = dist.Normal(torch.zeros(3, 4), 2.0 * torch.ones(3, 4)).to_event(1)
    analytic = kl_divergence(q, p)
    z = q.rsample((200_000,))
    monte_carlo = (q.log_prob(z) - p.log_prob(z)).mean(0)
    torch.testing.assert_close(analytic, monte_carlo, atol=0.02, rtol=0.0)
    anisotropic = dist.Normal(torch.zeros(3, 4), torch.tensor([1.0, 2.0, 3.0, 4.0])).to_event(1)
    with pytest.raises(NotImplementedError):
        kl_divergence(q, anisotropic)


def test_guide_builds_T_vectors_from_the_last_hidden_layer():
    model = get_model("vae", input_dim=10, latent_dim=3)
    guide = get_guide("householder", model, num_flows=5, hidden_dims=(7,))
    v = guide.reflection_vectors("z", torch.randn(2, 7))
    assert v.shape == (2, 5, 3)
