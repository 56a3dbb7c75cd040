"""The hand-derived loss gradient of SAMformer's channel transformer (flatcast.models.channel_gradient) against
autograd through the module, single and batched, and the trainer steps that use it."""

from __future__ import annotations

import copy

import pytest
import torch

from flatcast.batched import BatchedChannelTransformer
from flatcast.models import ChannelTransformer
from flatcast.models.channel_gradient import closed_form_unsupported, model_loss_and_gradient
from flatcast.optim import SAM
from flatcast.trainer import BatchedTrainingStep, TrainingStep

L, H, D, B = 24, 6, 4, 5

CONFIGS = [
    dict(bias=True, revin=True),
    dict(bias=False, revin=True),
    dict(bias=True, revin=False),
    dict(bias=True, revin=True, affine=False),
    dict(attention="identity"),  # SAMformer App. C.4's A = I
    dict(attention="identity", bias=False, revin=False),
]


def _model(seed: int, bias=True, revin=True, affine=True, attention="learned") -> ChannelTransformer:
    model = ChannelTransformer(L, H, D, seed=seed, bias=bias, revin=revin, attention=attention).double()
    if revin and not affine:
        model.revin.affine = False
        del model.revin.affine_weight, model.revin.affine_bias
        model.revin.register_parameter("affine_weight", None)
        model.revin.register_parameter("affine_bias", None)
    if revin and affine:  # away from γ = 1, β = 0 so that their gradients are exercised in general position
        with torch.no_grad():
            generator = torch.Generator().manual_seed(seed + 100)
            model.revin.affine_weight.copy_(0.5 + torch.rand(D, generator=generator, dtype=torch.float64))
            model.revin.affine_bias.copy_(torch.randn(D, generator=generator, dtype=torch.float64))
    return model


def _batch(seed: int):
    generator = torch.Generator().manual_seed(seed)
    x = 3.0 * torch.randn(B, D, L, generator=generator, dtype=torch.float64) + 1.0
    y = torch.randn(B, D, H, generator=generator, dtype=torch.float64)
    return x, y


def _autograd(model, x, y):
    model.zero_grad(set_to_none=True)
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_closed_form_gradient_equals_autograd(config):
    model = _model(0, **config)
    assert closed_form_unsupported(model) is None
    x, y = _batch(1)
    loss_ref, grads_ref = _autograd(model, x, y)
    model.zero_grad(set_to_none=True)
    loss, statistics = model_loss_and_gradient(model, x, y)
    assert torch.allclose(loss, loss_ref, rtol=1e-12, atol=0)
    # W_K's bias has an exact gradient of 0 (it shifts a whole row of scores, which the softmax ignores): both
    # sides give float noise there, so every tensor is compared on the scale of the largest gradient entry
    scale = max(g.abs().max() for g in grads_ref.values())
    for name, p in model.named_parameters():
        assert (p.grad - grads_ref[name]).abs().max() / scale < 1e-12, name
    # a second evaluation on the same batch with the returned RevIN statistics gives the same numbers
    again, _ = model_loss_and_gradient(model, x, y, statistics)
    assert torch.equal(again, loss)


@pytest.mark.parametrize("attention", ["learned", "identity"])
def test_closed_form_with_finite_differences(attention):
    """An independent check of one coordinate per tensor: central differences of the module's own loss."""
    model = _model(3, attention=attention)
    x, y = _batch(4)
    model_loss_and_gradient(model, x, y)
    step, generator = 1e-6, torch.Generator().manual_seed(0)
    for name, p in model.named_parameters():
        index = tuple(int(torch.randint(0, n, (), generator=generator)) for n in p.shape)
        with torch.no_grad():
            original = p[index].item()
            p[index] = original + step
            up = torch.nn.functional.mse_loss(model(x), y).item()
            p[index] = original - step
            down = torch.nn.functional.mse_loss(model(x), y).item()
            p[index] = original
        assert p.grad[index].item() == pytest.approx((up - down) / (2 * step), rel=1e-5, abs=1e-7), name  # float64 differences: ~1e-9 of noise


@pytest.mark.parametrize("config", CONFIGS[:3] + CONFIGS[4:], ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_batched_closed_form_gives_each_member_its_own_gradient(config):
    members = [_model(seed, **config) for seed in (0, 1, 2)]
    net = BatchedChannelTransformer(members).double()
    assert net.closed_form
    batches = [_batch(10 + i) for i in range(3)]
    x = torch.stack([b[0] for b in batches])
    y = torch.stack([b[1] for b in batches])
    losses = net.member_losses_and_gradient(x, y)
    gradient = net.flat.grad.clone()
    net.flat.grad = None
    net.member_losses(x, y).sum().backward()
    assert torch.allclose(gradient, net.flat.grad, rtol=1e-10, atol=1e-13)
    for i, member in enumerate(members):
        loss_ref, _ = _autograd(member, *batches[i])
        assert losses[i].item() == pytest.approx(loss_ref.item(), rel=1e-12)


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(attention="random"), "random"),
    (dict(attention="temporal"), "temporal"),
    (dict(sigma_reparam=True), "SigmaReparamLinear"),
])
def test_unsupported_models_are_named_and_fall_back_to_autograd(kwargs, fragment):
    model = ChannelTransformer(L, H, D, seed=0, **kwargs)
    reason = closed_form_unsupported(model)
    assert reason is not None and fragment in reason
    optimizer = SAM(model.parameters(), rho=0.1, lr=1e-3)
    assert TrainingStep(model, optimizer).closed_form is False
    with pytest.raises(ValueError, match="closed_form=True"):
        TrainingStep(model, optimizer, closed_form=True)
    assert not BatchedChannelTransformer([model]).closed_form
    assert "not a ChannelTransformer" in closed_form_unsupported(torch.nn.Linear(2, 2))


def _weights(model):
    return torch.cat([p.detach().reshape(-1) for name, p in model.named_parameters() if name != "key.bias"])


@pytest.mark.parametrize("attention", ["learned", "identity"])
def test_training_step_closed_form_follows_the_autograd_trajectory(attention):
    """Ten SAM steps with either gradient end at the same weights (float64; W_K's bias excluded: its exact gradient
    is 0 and Adam turns float noise in it into moves of ~lr that change no output)."""
    closed = _model(5, attention=attention)
    reference = copy.deepcopy(closed)
    steps = [TrainingStep(m, SAM(m.parameters(), rho=0.3, lr=1e-2), closed_form=flag)
             for m, flag in ((closed, True), (reference, False))]
    for i in range(10):
        x, y = _batch(20 + i)
        losses = [step(x, y) for step in steps]
        assert losses[0].item() == pytest.approx(losses[1].item(), rel=1e-9)
    assert steps[0].grad_evals == steps[1].grad_evals == 20
    assert torch.allclose(_weights(closed), _weights(reference), rtol=1e-8, atol=1e-10)
    x, y = _batch(99)
    assert torch.allclose(closed(x), reference(x), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("attention", ["learned", "identity"])
def test_batched_training_step_closed_form_follows_autograd(attention):
    members = [_model(seed, attention=attention) for seed in (0, 1)]
    nets = [BatchedChannelTransformer(copy.deepcopy(members)).double() for _ in range(2)]
    nets[1].closed_form = False  # force autograd
    steps = [BatchedTrainingStep(net, SAM([net.flat], rho=0.3, lr=1e-2).per_member(2)) for net in nets]
    for i in range(8):
        batches = [_batch(40 + 2 * i + j) for j in range(2)]
        x = torch.stack([b[0] for b in batches])
        y = torch.stack([b[1] for b in batches])
        first = [step(x, y) for step in steps]
        assert torch.allclose(first[0], first[1], rtol=1e-9)
    x = _batch(77)[0]
    assert torch.allclose(nets[0](x), nets[1](x), rtol=1e-8, atol=1e-10)
