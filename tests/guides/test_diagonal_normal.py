import pytest
import torch

from zoo.models.nets import GaussianHead, ShiftBatchNorm
from zoo.registry import get_guide, get_model


@pytest.mark.parametrize("batch_norm", [False, True, "shift"])
def test_heads_give_positive_scales_and_learn(batch_norm):
    torch.manual_seed(0)
    head = GaussianHead(5, 3, batch_norm)
    loc, scale = head(torch.randn(8, 5))
    assert loc.shape == scale.shape == (8, 3) and (scale > 0).all()
    (loc.sum() + scale.sum()).backward()
    assert head.loc.weight.grad is not None
    if batch_norm:  # normalized over the batch: zero mean, plus the learned shift if any
        shift = head.loc_norm.shift if batch_norm == "shift" else 0.0
        torch.testing.assert_close(loc.mean(0), torch.zeros(3) + shift, atol=1e-5, rtol=0)


def test_shift_batch_norm_learns_a_shift_and_no_scale():
    norm = ShiftBatchNorm(4)
    assert [name for name, _ in norm.named_parameters()] == ["shift"]
    with torch.no_grad():
        norm.shift.fill_(2.0)
    out = norm(torch.randn(16, 4) * 10 + 3)
    torch.testing.assert_close(out.mean(0), torch.full((4,), 2.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(0, unbiased=False), torch.ones(4), atol=1e-3, rtol=0)


def test_bad_batch_norm_option_is_refused():
    with pytest.raises(ValueError, match="batch_norm must be False, True or 'shift'"):
        get_guide("diagonal_normal", get_model("vae"), batch_norm="yes")
