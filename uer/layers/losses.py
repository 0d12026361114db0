"""Cross-entropy over a large vocabulary, with its accuracy, in one pass over the logits.

``F.cross_entropy`` on the CPU runs ``log_softmax``, then a negative log-likelihood whose backward
first fills an (N, V) zero tensor, then ``log_softmax``'s backward; the accuracy beside it is an
``argmax`` over (N, V), which PyTorch runs far slower than a ``max``. For the MLM head (N masked
tokens x 21k words) that was a quarter of a BERT-tiny training step. Here the forward keeps the
log-probabilities, the backward turns them into ``softmax - one_hot`` in place, and the accuracy
compares the target's log-probability with the row maximum. ``bench/pretrain_speed.py`` measures
the step it belongs to; ``tests/test_losses.py`` checks loss and gradient against ``F.cross_entropy``.
"""
import torch


class _TokenCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor):  # (N, V) float, (N,) long
        logp = torch.log_softmax(logits, dim=-1)
        picked = logp.gather(1, labels[:, None]).squeeze(1)  # (N,)
        correct = (picked >= logp.amax(dim=-1)).sum()  # a tie with another word counts as right
        ctx.save_for_backward(logp, labels)
        ctx.spent = False
        return -picked.mean(), correct

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor, _grad_correct):
        if ctx.spent:  # the saved log-probabilities became the gradient the first time
            raise RuntimeError("token_cross_entropy: backward ran twice through the same graph (retain_graph)")
        ctx.spent = True
        logp, labels = ctx.saved_tensors
        grad = logp.exp_()  # softmax, written over the log-probabilities nothing else holds
        grad[torch.arange(labels.numel(), device=labels.device), labels] -= 1
        return grad.mul_(grad_loss / labels.numel()), None


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy of ``logits`` (N, V) against ``labels`` (N,), and the share predicted right.

    The same loss and gradient as ``F.cross_entropy(logits.float(), labels)`` (no ignore index:
    pass only the rows to predict, N >= 1); the accuracy is detached.
    """
    if labels.numel() == 0:
        raise ValueError("token_cross_entropy: no rows to predict")
    loss, correct = _TokenCrossEntropy.apply(logits.float(), labels)
    return loss, (correct.float() / labels.numel()).detach()
