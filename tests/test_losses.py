import pytest
import torch

from lightmycells.train.config import LossConfig
from lightmycells.train.losses import TERMS, CombinedLoss, masked_mean

pytestmark = pytest.mark.torch


def _pair(seed=0, shape=(3, 2, 24, 24)):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g), torch.rand(shape, generator=g)


@pytest.mark.parametrize("name", sorted(TERMS))
def test_perfect_prediction_costs_nothing(name):
    _, target = _pair()
    assert TERMS[name](target.clone(), target).abs().max() < 1e-4


@pytest.mark.parametrize("name", sorted(TERMS))
def test_wrong_prediction_costs_something(name):
    pred, target = _pair()
    assert (TERMS[name](pred, target) > 1e-3).all()


def test_pearson_ignores_scale_and_offset_but_mse_does_not():
    _, target = _pair()
    scaled = 3.0 * target + 0.5
    assert TERMS["pearson"](scaled, target).abs().max() < 1e-5
    assert TERMS["mse"](scaled, target).min() > 0.1


@pytest.mark.parametrize("name", [*sorted(TERMS), "combined"])
def test_missing_targets_get_exactly_zero_gradient(name):
    pred, target = _pair(1)
    pred.requires_grad_(True)
    target[0, 1] = 0.0  # a missing target is an all-zero placeholder …
    target[2, 0] = 0.0
    mask = torch.ones(3, 2)
    mask[0, 1] = mask[2, 0] = 0.0  # … that the mask switches off
    if name == "combined":
        loss, _ = CombinedLoss(LossConfig(l1=0.5))(pred, target, mask)
    else:
        loss = masked_mean(TERMS[name](pred, target), mask)
    loss.backward()
    assert torch.isfinite(loss)
    assert pred.grad[0, 1].abs().max() == 0 and pred.grad[2, 0].abs().max() == 0
    assert pred.grad[1, 1].abs().max() > 0  # present targets do pull


def test_masked_out_targets_do_not_change_the_loss():
    pred, target = _pair(2)
    mask = torch.tensor([[1.0, 0.0]] * 3)
    other = target.clone()
    other[:, 1] = torch.randn_like(other[:, 1]) * 100
    loss_fn = CombinedLoss(LossConfig())
    assert loss_fn(pred, target, mask)[0] == loss_fn(pred, other, mask)[0]


def test_all_masked_is_zero_not_nan():
    pred, target = _pair()
    loss, parts = CombinedLoss(LossConfig())(pred, target, torch.zeros(3, 2))
    assert loss.item() == 0.0 and set(parts) == {"mse", "ssim", "pearson", "cosine"}


def test_default_weights_follow_the_seed_paper():
    assert CombinedLoss(LossConfig()).weights == {
        "mse": 1.0, "ssim": 0.2, "pearson": 0.1, "cosine": 0.1}
