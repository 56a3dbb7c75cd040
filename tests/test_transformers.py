"""Tests for RevIN, σReparam (SAMformer Eq. 5), the channel-wise transformer (Eq. 3–4) and the standard transformer."""

from __future__ import annotations

import math

import pytest
import torch

from flatcast.models import ChannelTransformer, RevIN, SigmaReparamLinear, StandardTransformer

B, D, L, H = 4, 3, 12, 5
KINDS = ("learned", "random", "frozen_qk", "identity", "temporal")


def _x(batch: int = B, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    # channels on different scales and offsets so that RevIN has something to do
    scale = torch.tensor([1.0, 5.0, 0.3], dtype=dtype)[:, None]
    offset = torch.tensor([0.0, -3.0, 10.0], dtype=dtype)[:, None]
    return torch.randn(batch, D, L, generator=gen, dtype=dtype) * scale + offset


# ----------------------------------------------------------------------------------------------- RevIN
def test_revin_hand_computed_values_and_detached_statistics():
    revin = RevIN(1)
    x = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]], requires_grad=True)
    z = revin.normalize(x)
    expected = (torch.tensor([1.0, 2.0, 3.0, 4.0]) - 2.5) / math.sqrt(1.25 + 1e-5)
    torch.testing.assert_close(z[0, 0].detach(), expected)
    assert revin.mean.item() == pytest.approx(2.5)
    assert revin.std.item() == pytest.approx(math.sqrt(1.25 + 1e-5))
    assert not revin.mean.requires_grad and not revin.std.requires_grad
    # statistics detached: d z_i / d x_j = δ_ij / s exactly
    z.sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 1 / math.sqrt(1.25 + 1e-5)))


def test_revin_round_trip_with_nontrivial_affine():
    revin = RevIN(D).double()
    with torch.no_grad():
        revin.affine_weight.copy_(torch.tensor([0.5, -2.0, 3.0]))
        revin.affine_bias.copy_(torch.tensor([1.0, 0.2, -4.0]))
    x = _x(dtype=torch.float64)
    z = revin.normalize(x)
    # per channel: mean = β_c, std = |γ_c|·σ/sqrt(σ²+ε)
    torch.testing.assert_close(z.mean(-1), revin.affine_bias.detach().expand(B, D))
    back = revin.denormalize(z)
    torch.testing.assert_close(back, x, rtol=1e-8, atol=1e-8)
    # denormalize of a horizon-length tensor uses the stored statistics
    y = torch.zeros(B, D, H, dtype=torch.float64) + revin.affine_bias.detach()[:, None]
    torch.testing.assert_close(revin.denormalize(y), revin.mean.expand(B, D, H))


def test_revin_errors():
    revin = RevIN(D)
    with pytest.raises(RuntimeError, match="before any normalize"):
        revin.denormalize(torch.zeros(B, D, H))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, T\)"):
        revin.normalize(torch.zeros(B, D + 1, L))
    with pytest.raises(ValueError, match="n_channels"):
        RevIN(0)


# ----------------------------------------------------------------------------------------------- σReparam
def test_sigma_reparam_spectral_norm_equals_abs_gamma():
    torch.manual_seed(0)
    layer = SigmaReparamLinear(7, 5).double()
    # u, v initialised from the exact (float32) SVD: exact at init up to float32 rounding
    assert torch.linalg.matrix_norm(layer.effective_weight(), 2).item() == pytest.approx(1.0, abs=1e-6)
    layer.reset_singular_vectors()  # float64 SVD
    assert torch.linalg.matrix_norm(layer.effective_weight(), 2).item() == pytest.approx(1.0, abs=1e-12)
    with torch.no_grad():
        layer.gamma.fill_(-2.5)
        layer.weight.add_(0.3 * torch.randn_like(layer.weight))
    # after a weight change the estimate tracks W through power iteration
    layer.power_iteration(300)
    assert torch.linalg.matrix_norm(layer.effective_weight(), 2).item() == pytest.approx(2.5, abs=1e-4)
    assert layer.weight_spectral_norm().item() == pytest.approx(
        torch.linalg.matrix_norm(layer.weight, 2).item(), rel=1e-6
    )
    exact = SigmaReparamLinear(6, 4, exact_spectral_norm=True)
    with torch.no_grad():
        exact.gamma.fill_(0.7)
        exact.weight.mul_(13.0)
    assert torch.linalg.matrix_norm(exact.effective_weight(), 2).item() == pytest.approx(0.7, abs=1e-5)


def test_sigma_reparam_forward_one_power_step_in_training_only():
    torch.manual_seed(1)
    layer = SigmaReparamLinear(6, 4)
    with torch.no_grad():
        layer.weight.add_(0.5 * torch.randn_like(layer.weight))
    x = torch.randn(3, 6)
    u0, v0 = layer.u.clone(), layer.v.clone()
    layer.eval()
    out_a, out_b = layer(x), layer(x)
    assert torch.equal(out_a, out_b) and torch.equal(layer.u, u0) and torch.equal(layer.v, v0)  # eval: deterministic, no state change
    layer.train()
    with torch.no_grad():
        layer(x)
    assert torch.equal(layer.u, u0)  # no_grad: no power step either
    out = layer(x)
    w = layer.weight.detach()
    v1 = w.t() @ u0 / (w.t() @ u0).norm()
    u1 = w @ v1 / (w @ v1).norm()
    torch.testing.assert_close(layer.v, v1)
    torch.testing.assert_close(layer.u, u1)
    sigma = u1 @ w @ v1
    torch.testing.assert_close(out, x @ (layer.gamma / sigma * w).t() + layer.bias, rtol=1e-5, atol=1e-6)


def test_sigma_reparam_graph_survives_a_second_training_forward():
    """SAM-style usage: a second forward (power step) before backward of the first must not break autograd."""
    layer = SigmaReparamLinear(5, 3)
    x = torch.randn(2, 5)
    first = layer(x).sum()
    layer(x).sum()
    first.backward()
    assert layer.gamma.grad is not None and torch.isfinite(layer.weight.grad).all()


# ----------------------------------------------------------------------------------------------- channel transformer
@pytest.mark.parametrize("attention", KINDS)
@pytest.mark.parametrize("revin", [True, False])
@pytest.mark.parametrize("sigma_reparam", [False, True])
def test_channel_transformer_shapes_and_attention_rows(attention, revin, sigma_reparam):
    model = ChannelTransformer(L, H, D, attention=attention, sigma_reparam=sigma_reparam, revin=revin, seed=0)
    x = _x()
    y = model(x)
    assert y.shape == (B, D, H) and torch.isfinite(y).all()
    n_tokens = L if attention == "temporal" else D
    A = model.last_attention
    assert A.shape == (B, n_tokens, n_tokens) and not A.requires_grad
    assert (A >= 0).all()
    torch.testing.assert_close(A.sum(-1), torch.ones(B, n_tokens))
    if attention == "identity":
        assert torch.equal(A, torch.eye(D).expand(B, D, D))
    scores = model.attention_scores(x)
    torch.testing.assert_close(scores.detach(), A)
    model.eval()
    torch.testing.assert_close(model.predict(x), model(x))


def test_learned_attention_matches_einsum_reference_of_eq3_eq4():
    torch.manual_seed(3)
    model = ChannelTransformer(L, H, D, d_model=4, revin=False, bias=False).double()
    x = _x(dtype=torch.float64)
    w = model.weight_matrices()
    assert w["W_Q"].shape == (L, 4) and w["W_O"].shape == (4, L) and w["W"].shape == (L, H)
    scores = torch.einsum("bdl,lm,km,bek->bde", x, w["W_Q"], w["W_K"], x) / math.sqrt(4)  # X W_Q W_Kᵀ Xᵀ
    A = torch.softmax(scores, dim=-1)
    reference = torch.einsum("bdl,lh->bdh", x + torch.einsum("bde,bel,lm,mk->bdk", A, x, w["W_V"], w["W_O"]), w["W"])
    torch.testing.assert_close(model(x), reference)
    torch.testing.assert_close(model.last_attention, A)


def test_learned_attention_with_bias_revin_and_sigma_matches_manual_computation():
    torch.manual_seed(4)
    model = ChannelTransformer(L, H, D, d_model=4, sigma_reparam=True, revin=True).double()
    with torch.no_grad():
        model.revin.affine_weight.copy_(torch.tensor([1.5, 0.5, -1.0]))
        model.revin.affine_bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        model.query.gamma.fill_(2.0)
    model.eval()  # no power step: Ŵ uses the stored u, v
    x = _x(dtype=torch.float64)
    w = model.weight_matrices()
    mean, std = x.mean(-1, keepdim=True), torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-5)
    gain, shift = model.revin.affine_weight[:, None], model.revin.affine_bias[:, None]
    z = (x - mean) / std * gain + shift
    q = z @ w["W_Q"] + model.query.bias
    k = z @ w["W_K"] + model.key.bias
    A = torch.softmax(q @ k.transpose(1, 2) / 2.0, dim=-1)
    mixed = z + (A @ (z @ w["W_V"] + model.value.bias)) @ w["W_O"] + model.output.bias
    out = mixed @ w["W"] + model.head.bias
    expected = (out - shift) / (gain + 1e-10) * std + mean
    torch.testing.assert_close(model(x), expected)
    assert torch.linalg.matrix_norm(w["W_Q"], 2).item() == pytest.approx(2.0, abs=1e-6)


def test_identity_attention_equals_hand_formula():
    model = ChannelTransformer(L, H, D, d_model=4, attention="identity", revin=False, bias=False, seed=5).double()
    x = _x(dtype=torch.float64)
    w = model.weight_matrices()
    assert set(w) == {"W_V", "W_O", "W"}
    torch.testing.assert_close(model(x), (x + x @ w["W_V"] @ w["W_O"]) @ w["W"])


def test_temporal_attention_matches_reference():
    model = ChannelTransformer(L, H, D, d_model=4, attention="temporal", revin=False, bias=False, seed=6).double()
    x = _x(dtype=torch.float64)
    w = model.weight_matrices()
    assert w["W_Q"].shape == (D, 4) and w["W_O"].shape == (4, D)
    xt = x.transpose(1, 2)  # tokens = time steps
    A = torch.softmax(xt @ w["W_Q"] @ (xt @ w["W_K"]).transpose(1, 2) / 2.0, dim=-1)
    expected = (xt + A @ xt @ w["W_V"] @ w["W_O"]).transpose(1, 2) @ w["W"]
    torch.testing.assert_close(model(x), expected)
    assert model.last_attention.shape == (B, L, L)


@pytest.mark.parametrize("attention", ["frozen_qk", "identity"])
def test_frozen_qk_and_identity_have_no_trainable_query_key(attention):
    model = ChannelTransformer(L, H, D, attention=attention, seed=0)
    names = [name for name, _ in model.named_parameters()]
    assert not any(name.startswith(("query", "key")) for name in names)
    assert {"value.weight", "output.weight", "head.weight", "revin.affine_weight"} <= set(names)
    if attention == "identity":
        assert model.query is None and model.key is None
        assert model.attention_parameters(include_values=False) == []
        return
    assert not model.query.weight.requires_grad and "query.weight" in dict(model.named_buffers())
    frozen = [model.query.weight.clone(), model.key.weight.clone(), model.key.bias.clone()]
    value_before = model.value.weight.detach().clone()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model(_x()).pow(2).mean().backward()
    opt.step()
    assert torch.equal(model.query.weight, frozen[0]) and torch.equal(model.key.weight, frozen[1])
    assert torch.equal(model.key.bias, frozen[2])
    assert not torch.equal(model.value.weight, value_before)


@pytest.mark.parametrize("revin", [False, True])
def test_random_transformer_trains_only_the_head_as_in_the_paper(revin):
    """SAMformer §2.2: "only W is optimized, while ... W_Q, W_K, W_V, W_O are fixed" (+ RevIN when used)."""
    model = ChannelTransformer(L, H, D, attention="random", revin=revin, seed=0)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    expected = {"head.weight", "head.bias"} | ({"revin.affine_weight", "revin.affine_bias"} if revin else set())
    assert trainable == expected
    assert model.n_parameters() == L * H + H + (2 * D if revin else 0)
    assert model.attention_parameters() == []
    buffers = dict(model.named_buffers())
    for name in ("query", "key", "value", "output"):
        assert f"{name}.weight" in buffers
        assert torch.equal(buffers[f"{name}.bias"], torch.zeros_like(buffers[f"{name}.bias"]))  # Glorot: bias 0
    before = {name: b.clone() for name, b in buffers.items()}
    head_before = model.head.weight.detach().clone()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        model(_x()).pow(2).mean().backward()
        opt.step()
    for name, b in model.named_buffers():
        if name.startswith(("query", "key", "value", "output")):
            assert torch.equal(b, before[name]), name
    assert not torch.equal(model.head.weight, head_before)


def test_random_transformer_weights_follow_glorot_uniform():
    """Glorot & Bengio (2010): U(−a, a) with a = √(6/(fan_in + fan_out)), i.e. variance 2/(fan_in + fan_out)."""
    lookback, d_model = 512, 16
    model = ChannelTransformer(lookback, 8, 3, d_model=d_model, attention="random", seed=0)
    bound = math.sqrt(6.0 / (lookback + d_model))
    for layer in (model.query, model.key, model.value, model.output):
        w = layer.weight
        assert w.abs().max() <= bound
        assert w.abs().max() > 0.98 * bound  # 8,192 draws fill the interval
        assert float(w.var()) == pytest.approx(2.0 / (lookback + d_model), rel=0.05)
    # the head keeps nn.Linear's default initialisation, as in the learned model
    learned = ChannelTransformer(lookback, 8, 3, d_model=d_model, seed=1)
    assert float(model.head.weight.detach().abs().max()) <= 1 / math.sqrt(lookback)
    assert float(learned.head.weight.detach().abs().max()) <= 1 / math.sqrt(lookback)


def test_random_transformer_is_linear_in_its_trainable_weights():
    """With W_Q, W_K, W_V, W_O fixed, f(X) = P W with P = X + A(X) X W_V W_O fixed (SAMformer §2.2)."""
    model = ChannelTransformer(L, H, D, d_model=4, attention="random", revin=False, bias=False, seed=3).double()
    x = _x(dtype=torch.float64)
    w = model.weight_matrices()
    A = torch.softmax(x @ w["W_Q"] @ (x @ w["W_K"]).transpose(1, 2) / 2.0, dim=-1)
    P = x + A @ x @ w["W_V"] @ w["W_O"]
    torch.testing.assert_close(model(x), P @ w["W"])


@pytest.mark.parametrize("attention", ["random", "frozen_qk"])
def test_frozen_attention_with_sigma_reparam_is_spectrally_normalised_and_frozen(attention):
    model = ChannelTransformer(L, H, D, attention=attention, sigma_reparam=True, seed=0)
    assert torch.linalg.matrix_norm(model.query.weight, 2).item() == pytest.approx(1.0, abs=1e-5)
    assert not any(p is model.query.weight for p in model.parameters())
    if attention == "random":
        assert torch.linalg.matrix_norm(model.output.weight, 2).item() == pytest.approx(1.0, abs=1e-5)
        assert {n for n, p in model.named_parameters()} == {"head.weight", "head.bias", "head.gamma",
                                                             "revin.affine_weight", "revin.affine_bias"}


def test_attention_parameters_lists_query_key_value_output():
    model = ChannelTransformer(L, H, D, seed=0)
    qk = model.attention_parameters(include_values=False)
    assert [p.shape for p in qk] == [(16, L), (16,), (16, L), (16,)]
    assert qk[0] is model.query.weight and qk[2] is model.key.weight
    everything = model.attention_parameters()
    assert len(everything) == 8 and everything[4] is model.value.weight and everything[6] is model.output.weight


@pytest.mark.parametrize("attention", KINDS)
@pytest.mark.parametrize("sigma_reparam", [False, True])
def test_gradients_reach_every_trainable_parameter(attention, sigma_reparam):
    model = ChannelTransformer(L, H, D, attention=attention, sigma_reparam=sigma_reparam, seed=1)
    model(_x()).pow(2).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_parameter_count_matches_formula():
    model = ChannelTransformer(L, H, D, d_model=4, seed=0)
    # W_Q, W_K, W_V: L·d+d each; W_O: d·L+L; W: L·H+H; RevIN: 2D
    assert model.n_parameters() == 3 * (L * 4 + 4) + (4 * L + L) + (L * H + H) + 2 * D


def test_seed_determinism_and_global_rng_untouched():
    state = torch.get_rng_state()
    a = ChannelTransformer(L, H, D, sigma_reparam=True, seed=7)
    b = ChannelTransformer(L, H, D, sigma_reparam=True, seed=7)
    c = ChannelTransformer(L, H, D, sigma_reparam=True, seed=8)
    assert torch.equal(torch.get_rng_state(), state)
    x = _x()
    assert torch.equal(a(x), b(x))
    assert not torch.allclose(a(x), c(x))
    torch.manual_seed(11)
    d = ChannelTransformer(L, H, D, attention="random")
    torch.manual_seed(11)
    e = ChannelTransformer(L, H, D, attention="random")
    assert torch.equal(d.query.weight, e.query.weight) and torch.equal(d(x), e(x))


def test_channel_transformer_bad_inputs():
    model = ChannelTransformer(L, H, D, seed=0)
    with pytest.raises(ValueError, match=r"\(B, D=3, L=12\), got \(3, 12\)"):
        model(torch.zeros(D, L))
    with pytest.raises(ValueError, match=r"got \(4, 2, 12\)"):
        model(torch.zeros(B, 2, L))
    with pytest.raises(ValueError, match=r"got \(4, 3, 11\)"):
        model(torch.zeros(B, D, L - 1))
    with pytest.raises(TypeError, match="torch.Tensor"):
        model([[0.0]])
    with pytest.raises(ValueError, match="'learned', 'random', 'frozen_qk', 'identity', 'temporal'.*'channel'"):
        ChannelTransformer(L, H, D, attention="channel")
    with pytest.raises(ValueError, match="lookback"):
        ChannelTransformer(0, H, D)
    with pytest.raises(TypeError, match="seed"):
        ChannelTransformer(L, H, D, seed=1.5)


# ----------------------------------------------------------------------------------------------- standard transformer
SMALL = dict(d_model=16, n_heads=4, d_ff=32, n_layers=2)


@pytest.mark.parametrize("revin", [True, False])
@pytest.mark.parametrize("norm_first", [False, True])
def test_standard_transformer_shapes_gradients_and_determinism(revin, norm_first):
    model = StandardTransformer(L, H, D, revin=revin, norm_first=norm_first, dropout=0.0, seed=2, **SMALL)
    twin = StandardTransformer(L, H, D, revin=revin, norm_first=norm_first, dropout=0.0, seed=2, **SMALL)
    x = _x()
    y = model(x)
    assert y.shape == (B, D, H) and torch.isfinite(y).all()
    assert torch.equal(y, twin(x))
    y.pow(2).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    model.eval()
    torch.testing.assert_close(model.predict(x), model(x))


def test_standard_transformer_attention_agrees_with_multihead_attention_weights():
    model = StandardTransformer(L, H, D, dropout=0.0, seed=3, record_attention=True, **SMALL).eval()
    x = _x()
    with torch.no_grad():
        model(x)
        A = model.attention_scores(x)
        _, tokens = model._embed(x)
        _, reference = model.encoder.layers[0].self_attn(tokens, tokens, tokens, need_weights=True)
    assert A.shape == (B, L, L)
    torch.testing.assert_close(A.sum(-1), torch.ones(B, L))
    torch.testing.assert_close(A, reference, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.last_attention, A)


def test_standard_transformer_bad_inputs():
    model = StandardTransformer(L, H, D, seed=0, **SMALL)
    with pytest.raises(ValueError, match=r"got \(4, 3, 13\)"):
        model(torch.zeros(B, D, L + 1))
    with pytest.raises(ValueError, match="divisible"):
        StandardTransformer(L, H, D, d_model=10, n_heads=4)
    with pytest.raises(ValueError, match="dropout"):
        StandardTransformer(L, H, D, dropout=1.5)
