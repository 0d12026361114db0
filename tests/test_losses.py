"""uer.layers.losses.token_cross_entropy: F.cross_entropy's loss and gradient, argmax's accuracy."""
import pytest
import torch
import torch.nn.functional as F

from uer.layers.losses import token_cross_entropy


def test_loss_gradient_and_accuracy_match_pytorch():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(37, 101, generator=g) * 3
    labels = torch.randint(0, 101, (37,), generator=g)
    labels[:5] = base[:5].argmax(-1)  # some rows right, so the accuracy is not trivially 0
    ours, theirs = base.clone().requires_grad_(), base.clone().requires_grad_()
    loss, acc = token_cross_entropy(ours, labels)
    ref = F.cross_entropy(theirs, labels)
    (loss * 2.5).backward()
    (ref * 2.5).backward()
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(ours.grad, theirs.grad)
    assert acc.item() == pytest.approx((base.argmax(-1) == labels).float().mean().item())
    assert acc.item() > 4.5 / 37 and not acc.requires_grad


def test_low_precision_logits_get_the_float_gradient_back_in_their_dtype():
    base = torch.randn(8, 50).bfloat16()
    labels = torch.arange(8)
    ours, theirs = base.clone().requires_grad_(), base.clone().requires_grad_()
    token_cross_entropy(ours, labels)[0].backward()
    F.cross_entropy(theirs.float(), labels).backward()
    assert ours.grad.dtype == torch.bfloat16
    torch.testing.assert_close(ours.grad, theirs.grad)


def test_a_second_backward_through_the_graph_is_refused():
    x = torch.randn(4, 9, requires_grad=True)
    loss, _ = token_cross_entropy(x * 1.0, torch.zeros(4, dtype=torch.long))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward ran twice"):
        loss.backward()


def test_no_rows_is_an_error_not_a_nan():
    with pytest.raises(ValueError, match="no rows to predict"):
        token_cross_entropy(torch.zeros(0, 9), torch.zeros(0, dtype=torch.long))
