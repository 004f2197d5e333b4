import math

import pyro
import pytest
import torch
from torch.distributions import Normal

from zoo.infer.nested import NestedObjective, evaluate_nested
from zoo.infer.nested_programs import NestedPrograms
from zoo.infer.resampling import log_mean_exp
from zoo.models.targets import GaussianTarget, GeometricPath, RingGMM

LOG_Z = 0.7


def _gaussian_programs(num_levels=3, schedule="linear", seed=0):
    """Gaussian target and Gaussian kernels moved away from identity, so weights vary."""
    torch.manual_seed(seed)
    target = GaussianTarget([1.5, -1.0], [0.8, 1.2], log_z=LOG_Z)
    programs = NestedPrograms(GeometricPath(target, init_scale=1.0), num_levels, schedule,
                              hidden_dim=8)
    with torch.no_grad():
        for kernel in [*programs.forward_kernels, *programs.reverse_kernels]:
            for layer in (kernel.loc, kernel.scale):
                layer.weight.normal_(0.0, 0.2)
                layer.bias.normal_(0.0, 0.2)
    return programs, target


def _kernel_log_prob(kernel, x, y):
    """log N(y; x + W2 relu(W1 x + b1) + b2, softplus(...)^2) by hand."""
    h = torch.relu(x @ kernel.hidden.weight.T + kernel.hidden.bias)
    loc = x + h @ kernel.loc.weight.T + kernel.loc.bias
    scale = torch.log1p(torch.exp(h @ kernel.scale.weight.T + kernel.scale.bias))
    return Normal(loc, scale).log_prob(y).sum(-1)


def _log_gamma(target, z, beta):
    init = Normal(0.0, 1.0).log_prob(z).sum(-1)
    final = LOG_Z + Normal(target.loc, target.scale).log_prob(z).sum(-1)
    return (1 - beta) * init + beta * final


@pytest.mark.parametrize("divergence", ["nvi-rkl", "nvi-fkl", "avo"])
def test_incremental_weights_equal_hand_computed(divergence):
    programs, target = _gaussian_programs(num_levels=4)
    sweep = NestedObjective(divergence)(programs, 16, keep_particles=True)
    betas = torch.linspace(0, 1, 4)
    assert torch.all(sweep.log_weights[0] == 0)
    for k in range(1, 4):
        z_prev, z = sweep.particles[k - 1], sweep.particles[k]
        log_v = (_log_gamma(target, z, betas[k])
                 + _kernel_log_prob(programs.reverse_kernels[k - 1], z, z_prev)
                 - _log_gamma(target, z_prev, betas[k - 1])
                 - _kernel_log_prob(programs.forward_kernels[k - 1], z_prev, z))
        got = sweep.log_weights[k] - sweep.log_weights[k - 1]
        assert torch.allclose(got, log_v.detach(), atol=1e-4)


def _well_weighted_programs(num_levels=3, seed=0):
    """Constant-shift Gaussian kernels, the reverse narrower than the forward: finite variance."""
    torch.manual_seed(seed)
    target = GaussianTarget([1.0, -0.5], [1.0, 1.5], log_z=LOG_Z)
    programs = NestedPrograms(GeometricPath(target, init_scale=2.0), num_levels, hidden_dim=8)
    with torch.no_grad():
        for kernels, scale in [(programs.forward_kernels, 1.0), (programs.reverse_kernels, 0.6)]:
            for kernel in kernels:
                kernel.loc.bias.normal_(0.0, 0.3)
                kernel.scale.bias.fill_(math.log(math.expm1(scale)))  # softplus^-1
    return programs


def test_z_hat_is_unbiased_without_resampling():
    # Without resampling each particle's weight is an independent unbiased estimate of Z.
    programs = _well_weighted_programs(num_levels=4)
    torch.manual_seed(1)
    with torch.no_grad(), pyro.validation_enabled(False):
        weights = NestedObjective("nvi-rkl")(programs, 20000).log_weight.exp()
    standard_error = weights.std() / math.sqrt(len(weights))
    assert standard_error < 0.05 * math.exp(LOG_Z)  # so that the check below has power
    assert abs(weights.mean() - math.exp(LOG_Z)) < 4 * standard_error


def test_z_hat_is_unbiased_with_resampling():
    # With resampling, particles of one run are dependent: average Z-hat over independent runs.
    programs = _well_weighted_programs(num_levels=3)
    objective = NestedObjective("nvi-rkl", resample=True)
    torch.manual_seed(1)
    with torch.no_grad(), pyro.validation_enabled(False):
        z_hat = torch.stack([log_mean_exp(objective(programs, 8).log_weight)
                             for _ in range(400)]).exp()
    standard_error = z_hat.std() / math.sqrt(len(z_hat))
    assert standard_error < 0.1 * math.exp(LOG_Z)
    assert abs(z_hat.mean() - math.exp(LOG_Z)) < 4 * standard_error


def test_level_loss_touches_only_its_own_kernels():
    programs, _ = _gaussian_programs(num_levels=4, schedule="learned")
    sweep = NestedObjective("nvi-rkl", resample=True)(programs, 16)
    for k, loss in enumerate(sweep.level_losses, start=1):
        for j in range(1, 4):
            params = programs.kernel_parameters(j)
            grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
            touched = any(g is not None and g.abs().sum() > 0 for g in grads)
            assert touched == (j == k), (k, j)


@pytest.mark.parametrize("divergence", ["nvi-rkl", "nvi-fkl", "avo"])
def test_per_level_backward_matches_one_backward(divergence):
    programs, _ = _gaussian_programs(num_levels=3)
    torch.manual_seed(3)
    NestedObjective(divergence)(programs, 8, backward=True)
    per_level = [p.grad.clone() for p in programs.parameters()]
    programs.zero_grad()
    torch.manual_seed(3)
    sweep = NestedObjective(divergence)(programs, 8)
    sweep.loss.backward()
    for a, p in zip(per_level, programs.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-5)


@pytest.mark.parametrize("divergence, resample", [("nvi-rkl", True), ("nvi-fkl", False),
                                                  ("avo", False)])
def test_training_raises_the_effective_sample_size(divergence, resample):
    torch.manual_seed(4)
    programs = NestedPrograms(GeometricPath(GaussianTarget([3.0, -2.0], [0.5, 0.5])), 3,
                              hidden_dim=16)
    objective = NestedObjective(divergence, resample=resample)
    before = evaluate_nested(programs, objective, num_particles=50, num_batches=10)
    optimizer = torch.optim.Adam(programs.parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        objective(programs, 32, backward=True)
        optimizer.step()
    after = evaluate_nested(programs, objective, num_particles=50, num_batches=10)
    assert after["ess_percent"] > before["ess_percent"] + 10
    assert abs(after["log_z"]) < 0.1


def test_learned_schedule_is_monotone_and_moves():
    torch.manual_seed(5)
    programs = NestedPrograms(GeometricPath(RingGMM(), 5.0), 5, "learned", hidden_dim=8)
    assert torch.allclose(programs.schedule(), torch.linspace(0, 1, 5))
    optimizer = torch.optim.Adam(programs.parameters(), lr=5e-2)
    for _ in range(20):
        optimizer.zero_grad()
        NestedObjective("nvi-rkl", resample=True)(programs, 16, backward=True)
        optimizer.step()
    betas = programs.schedule()
    assert betas[0] == 0 and betas[-1] == 1 and torch.all(betas.diff() > 0)
    assert not torch.allclose(betas, torch.linspace(0, 1, 5))


def test_bad_configurations_say_what_to_do():
    with pytest.raises(ValueError, match="nvi-rkl"):
        NestedObjective("elbo")
    programs = NestedPrograms(GeometricPath(RingGMM(), 5.0), 3, "learned", hidden_dim=4)
    with pytest.raises(ValueError, match="linear schedule"):
        NestedObjective("avo")(programs, 4)
    with pytest.raises(ValueError, match="num_levels >= 2"):
        NestedPrograms(GeometricPath(RingGMM()), 1)
