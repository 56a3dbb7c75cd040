"""Tests of flatcast.diagnostics.attention: entropy, nuclear norm, Proposition 5, effective rank, callbacks."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from flatcast.diagnostics import attention as at
from flatcast.diagnostics import hessian as hs


# ------------------------------------------------------------------------------------------------ entropy
@pytest.mark.parametrize("D", [1, 2, 7])
def test_entropy_of_uniform_is_log_d_and_of_identity_is_zero(D):
    uniform = torch.full((3, D, D), 1.0 / D, dtype=torch.float64)
    identity = torch.eye(D).expand(3, D, D)
    assert at.attention_entropy(uniform) == pytest.approx(math.log(D), abs=1e-12)
    assert at.attention_entropy(identity) == 0.0


def test_entropy_per_sample_hand_computed():
    # sample 0: rows (½, ½, 0), (1, 0, 0), (⅓, ⅓, ⅓) → (log 2 + 0 + log 3) / 3 ; sample 1: identity → 0
    A0 = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    A = torch.stack([A0, torch.eye(3)])
    per_sample = at.attention_entropy(A, reduce="none")
    assert per_sample.shape == (2,)
    torch.testing.assert_close(per_sample, torch.tensor([(math.log(2) + math.log(3)) / 3, 0.0],
                                                         dtype=torch.float64))
    assert at.attention_entropy(A) == pytest.approx(float(per_sample.mean()))
    assert at.attention_entropy(A0, reduce="none").shape == ()


def test_entropy_rejects_non_stochastic_input():
    with pytest.raises(ValueError, match="sum to 1"):
        at.attention_entropy(torch.ones(2, 3, 3))
    with pytest.raises(ValueError, match="negative"):
        at.attention_entropy(torch.tensor([[1.5, -0.5], [0.5, 0.5]]))
    with pytest.raises(ValueError, match="reduce must be"):
        at.attention_entropy(torch.eye(2), reduce="sum")
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        at.attention_entropy(torch.ones(3) / 3)


# -------------------------------------------------------------------------------------- nuclear norm, Prop 5
def test_nuclear_norm_equals_numpy_singular_value_sum():
    A = torch.softmax(torch.randn(4, 5, 5, generator=torch.Generator().manual_seed(0)), dim=-1)
    expected = np.linalg.svd(A.numpy().astype(np.float64), compute_uv=False).sum(axis=-1)
    np.testing.assert_allclose(at.nuclear_norm(A, reduce="none").numpy(), expected, rtol=1e-12)
    assert at.nuclear_norm(A) == pytest.approx(expected.mean(), rel=1e-12)
    assert at.nuclear_norm(torch.eye(4)) == pytest.approx(4.0)


def test_proposition5_holds_with_symmetric_psd_weights():
    g = torch.Generator().manual_seed(1)
    for trial in range(5):
        X = torch.randn(8, 4, 6, generator=g, dtype=torch.float64) * (trial + 1)
        W_Q = torch.randn(6, 3, generator=g, dtype=torch.float64)
        lhs, rhs = at.proposition5_sides(X, W_Q, W_Q)  # W_Q W_Qᵀ is symmetric PSD
        assert lhs.shape == rhs.shape == (8,)
        assert torch.all(lhs <= rhs * (1 + 1e-12))
        scores = (X @ W_Q @ W_Q.T @ X.transpose(1, 2)).numpy()
        np.testing.assert_allclose(lhs.numpy(), np.linalg.svd(scores, compute_uv=False).sum(-1), rtol=1e-10)


def test_proposition5_equality_case_and_general_weights():
    # D = 1, W_Q = W_K = I: ‖x xᵀ‖_* = ‖x‖² = ‖I‖₂ ‖x‖_F² (equality).
    x = torch.tensor([[1.0, -2.0, 2.0]], dtype=torch.float64)
    lhs, rhs = at.proposition5_sides(x, torch.eye(3), torch.eye(3))
    assert float(lhs) == pytest.approx(9.0) and float(rhs) == pytest.approx(9.0)
    # The bound also follows from Hölder for non-symmetric W_Q W_Kᵀ.
    g = torch.Generator().manual_seed(2)
    X = torch.randn(5, 4, 6, generator=g)
    lhs, rhs = at.proposition5_sides(X, torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g))
    assert torch.all(lhs <= rhs * (1 + 1e-12))
    with pytest.raises(ValueError, match="look-back 6"):
        at.proposition5_sides(X, torch.randn(5, 2), torch.randn(5, 2))
    with pytest.raises(ValueError, match="same shape"):
        at.proposition5_sides(X, torch.randn(6, 2), torch.randn(6, 3))


# ------------------------------------------------------------------------------------------ effective rank
@pytest.mark.parametrize("D", [1, 3, 10])
def test_effective_rank_of_identity_is_d(D):
    assert float(at.effective_rank(torch.eye(D))) == pytest.approx(D, rel=1e-12)


def test_effective_rank_of_rank_one_is_one_and_hand_value():
    g = torch.Generator().manual_seed(3)
    u, v = torch.randn(6, 1, generator=g), torch.randn(1, 4, generator=g)
    assert float(at.effective_rank(u @ v)) == pytest.approx(1.0, abs=1e-6)
    # σ = (3, 1) → p = (¾, ¼): exp(−¾ log ¾ − ¼ log ¼)
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert float(at.effective_rank(torch.diag(torch.tensor([3.0, 1.0])))) == pytest.approx(expected, rel=1e-12)
    batch = torch.stack([torch.eye(3), 5 * torch.eye(3), torch.diag(torch.tensor([1.0, 0.0, 0.0]))])
    torch.testing.assert_close(at.effective_rank(batch), torch.tensor([3.0, 3.0, 1.0], dtype=torch.float64))


def test_effective_rank_of_zero_matrix_raises():
    with pytest.raises(ValueError, match="zero matrix"):
        at.effective_rank(torch.zeros(3, 3))


def test_singular_spectrum_normalisations():
    M = torch.diag(torch.tensor([1.0, 4.0, 3.0]))
    torch.testing.assert_close(at.singular_spectrum(M, normalize=False), torch.tensor([4.0, 3.0, 1.0],
                                                                                    dtype=torch.float64))
    torch.testing.assert_close(at.singular_spectrum(M), torch.tensor([0.5, 0.375, 0.125], dtype=torch.float64))
    torch.testing.assert_close(at.singular_spectrum(M, normalize="max"),
                               torch.tensor([1.0, 0.75, 0.25], dtype=torch.float64))
    with pytest.raises(ValueError, match="normalize must be"):
        at.singular_spectrum(M, normalize="l2")


# ------------------------------------------------------------------------------------------------ callbacks
class TinyAttentionModel(nn.Module):
    """Mimics the ChannelTransformer contract: last_attention (B, D, D) after forward, attention_parameters()."""

    def __init__(self, lookback=5, horizon=2, d_model=3):
        super().__init__()
        torch.manual_seed(0)
        self.query = nn.Linear(lookback, d_model)
        self.key = nn.Linear(lookback, d_model)
        self.value = nn.Linear(lookback, lookback)
        self.head = nn.Linear(lookback, horizon)
        self.last_attention = None

    def forward(self, x):
        scores = self.query(x) @ self.key(x).transpose(1, 2) / math.sqrt(self.query.out_features)
        attention = torch.softmax(scores, dim=-1)
        self.last_attention = attention.detach()
        return self.head(x + attention @ self.value(x))

    def attention_parameters(self):
        return [*self.query.parameters(), *self.key.parameters()]


class Windows:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return self.x.shape[0]


def toy_splits(n=12, D=3, L=5, H=2):
    g = torch.Generator().manual_seed(4)
    make = lambda: Windows(torch.randn(n, D, L, generator=g), torch.randn(n, D, H, generator=g))  # noqa: E731
    return SimpleNamespace(train=make(), val=make(), test=make())


def test_attention_callbacks_read_last_attention_on_first_windows():
    model, splits = TinyAttentionModel(), toy_splits()
    model.train()
    entropy = at.attention_entropy_callback(n_samples=7, batch_size=3)(model, 0, splits)
    nuclear = at.attention_nuclear_norm_callback(n_samples=7)(model, 0, splits)
    assert model.training
    with torch.no_grad():
        model(splits.val.x[:7])
    assert entropy == {"attention_entropy": pytest.approx(at.attention_entropy(model.last_attention), rel=1e-6)}
    assert nuclear == {"attention_nuclear_norm": pytest.approx(at.nuclear_norm(model.last_attention), rel=1e-6)}
    assert 0 < entropy["attention_entropy"] <= math.log(3)


def test_sharpness_callback_matches_top_eigenvalue_of_attention_block():
    model, splits = TinyAttentionModel().double(), toy_splits()
    splits.train = Windows(splits.train.x.double(), splits.train.y.double())
    callback = at.sharpness_callback(n_iter=10, n_samples=100, params="attention", tol=0.0)  # whole split
    out = callback(model, 1, splits)
    expected, _ = hs.top_eigenvalue(model, (splits.train.x, splits.train.y), params=model.attention_parameters(),
                                    n_iter=10, tol=0.0)
    assert out["lambda_max"] == pytest.approx(expected, rel=1e-9)
    subset = at.sharpness_callback(n_iter=5, n_samples=4)
    assert subset(model, 1, splits) == subset(model, 2, splits)  # the same fixed subset every epoch
    with pytest.raises(ValueError, match="params must be"):
        at.sharpness_callback(params="values")


def test_effective_rank_callback_with_representation_fn():
    model, splits = TinyAttentionModel(), toy_splits()
    represent = lambda m, x: x.flatten(1)  # noqa: E731  (N, D·L) matrix
    out = at.effective_rank_callback(represent, n_samples=10, n_singular_values=2)(model, 0, splits)
    matrix = splits.val.x[:10].flatten(1)
    assert out["effective_rank"] == pytest.approx(float(at.effective_rank(matrix)), rel=1e-12)
    spectrum = at.singular_spectrum(matrix)
    assert out["effective_rank_sv1"] == pytest.approx(float(spectrum[0]))
    assert out["effective_rank_sv2"] == pytest.approx(float(spectrum[1]))
    with pytest.raises(TypeError, match="representation_fn must be callable"):
        at.effective_rank_callback(None)


def test_callbacks_raise_clearly_without_attention():
    splits = toy_splits()
    with pytest.raises(AttributeError, match="last_attention"):
        at.attention_entropy_callback(n_samples=2)(nn.Identity(), 0, splits)
    with pytest.raises(KeyError, match="'holdout'"):
        at.attention_entropy_callback(split="holdout")(TinyAttentionModel(), 0, splits)
    with pytest.raises(ValueError, match="n_samples"):
        at.attention_nuclear_norm_callback(n_samples=0)


def test_real_channel_transformer_callbacks_and_proposition5():
    ct = pytest.importorskip("flatcast.models.channel_transformer")
    model = ct.ChannelTransformer(lookback=5, horizon=2, n_channels=3, d_model=4, revin=True)
    splits = toy_splits()
    entropy = at.attention_entropy_callback(n_samples=6)(model, 0, splits)["attention_entropy"]
    assert 0 < entropy <= math.log(3) + 1e-6
    sharp = at.sharpness_callback(n_iter=5, n_samples=6, params="attention")(model, 0, splits)["lambda_max"]
    assert math.isfinite(sharp)
    weights = model.weight_matrices()
    X = torch.randn(4, 3, 5, generator=torch.Generator().manual_seed(5))
    lhs, rhs = at.proposition5_sides(X, weights["W_Q"], weights["W_Q"])
    assert torch.all(lhs <= rhs * (1 + 1e-12))


# ------------------------------------------------------------- Prop. 5 on trained weights, last-layer spectra
def test_score_weights_psd_hand_cases():
    g = torch.Generator().manual_seed(3)
    W = torch.randn(6, 2, generator=g, dtype=torch.float64)
    same = at.score_weights_psd(W, W)  # W Wᵀ: symmetric PSD, rank 2 → smallest eigenvalue 0
    assert same["asymmetry"] == pytest.approx(0.0, abs=1e-12)
    assert same["min_eig"] == pytest.approx(0.0, abs=1e-12) and same["max_eig"] == pytest.approx(1.0)
    assert same["symmetric_psd"] == 1.0
    negated = at.score_weights_psd(W, -W)  # −W Wᵀ: symmetric negative semi-definite
    assert negated["asymmetry"] == pytest.approx(0.0, abs=1e-12)
    assert negated["min_eig"] == pytest.approx(-1.0) and negated["symmetric_psd"] == 0.0
    # M = e1 e2ᵀ: ‖M − Mᵀ‖_F = √2, ‖M‖_F = 1; symmetric part has eigenvalues ±½, ‖M‖₂ = 1
    e = torch.eye(3, 1, dtype=torch.float64)
    e2 = torch.roll(e, 1, dims=0)
    skew = at.score_weights_psd(e, e2)
    assert skew["asymmetry"] == pytest.approx(math.sqrt(2))
    assert skew["min_eig"] == pytest.approx(-0.5) and skew["max_eig"] == pytest.approx(0.5)
    assert skew["symmetric_psd"] == 0.0
    with pytest.raises(ValueError, match="zero matrix"):
        at.score_weights_psd(torch.zeros(3, 2), torch.ones(3, 2))
    with pytest.raises(ValueError, match="same shape"):
        at.score_weights_psd(torch.ones(3, 2), torch.ones(4, 2))


@pytest.mark.parametrize("sigma_reparam", [False, True])
def test_model_proposition5_reproduces_the_models_scores(sigma_reparam):
    from flatcast.models import ChannelTransformer

    model = ChannelTransformer(12, 3, 4, d_model=5, sigma_reparam=sigma_reparam, seed=0)
    x = torch.randn(6, 4, 12, generator=torch.Generator().manual_seed(1))
    sides = at.model_proposition5(model, x, batch_size=4)
    with torch.no_grad():
        tokens = model._normalized(x)
        scores = (model.query(tokens) @ model.key(tokens).transpose(1, 2)).double()
        attention = model.attention_scores(x).double()
    np.testing.assert_allclose(sides["lhs"].numpy(), torch.linalg.matrix_norm(scores, ord="nuc").numpy(), rtol=1e-5)
    torch.testing.assert_close(torch.softmax(scores / math.sqrt(5), dim=-1), attention, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sides["attention_nuclear_norm"].numpy(),
                               torch.linalg.matrix_norm(attention, ord="nuc").numpy(), rtol=1e-6)
    assert bool((sides["lhs"] <= sides["rhs"] * (1 + 1e-9)).all())
    # the right side by hand: ‖W̃_Q W̃_Kᵀ‖₂ ‖[X, 1]‖_F² with ‖[X, 1]‖_F² = ‖X‖_F² + D
    W_Q, W_K = at.augmented_score_weights(model)
    assert W_Q.shape == (13, 5)
    expected = torch.linalg.matrix_norm(W_Q.double() @ W_K.double().T, ord=2) * (
        tokens.double().square().sum(dim=(1, 2)) + 4)
    np.testing.assert_allclose(sides["rhs"].numpy(), expected.numpy(), rtol=1e-5)


def test_model_proposition5_needs_query_and_key():
    from flatcast.models import ChannelTransformer

    with pytest.raises(AttributeError, match="query/key"):
        at.model_proposition5(ChannelTransformer(8, 2, 3, attention="identity", seed=0), torch.randn(2, 3, 8))


def test_head_representation_is_what_the_head_reads():
    from flatcast.models import ChannelTransformer

    model = ChannelTransformer(10, 4, 3, d_model=4, revin=False, seed=2)
    x = torch.randn(5, 3, 10, generator=torch.Generator().manual_seed(0))
    rep = at.head_representation(model, x, batch_size=2)
    assert rep.shape == (15, 10) and rep.dtype == torch.float64
    with torch.no_grad():
        out = model(x)
        by_hand = x + model.output(model.attention_scores(x) @ model.value(x))
    torch.testing.assert_close(model.head(rep.float().reshape(5, 3, 10)), out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rep.reshape(5, 3, 10).float(), by_hand, rtol=1e-5, atol=1e-6)
    assert not model.head._forward_pre_hooks, "the capture hook must be removed"
    callback = at.representation_rank_callback(n_samples=5, split="val")
    value = callback(model, 0, SimpleNamespace(val=SimpleNamespace(x=x)))["representation_erank"]
    assert value == pytest.approx(float(at.effective_rank(rep)))


def test_proposition5_callback_keys_and_bound():
    from flatcast.models import ChannelTransformer

    model = ChannelTransformer(16, 4, 5, seed=0)
    splits = SimpleNamespace(val=SimpleNamespace(x=torch.randn(7, 5, 16, generator=torch.Generator().manual_seed(4))))
    row = at.proposition5_callback(n_samples=7)(model, 0, splits)
    assert set(row) == {"prop5_lhs", "prop5_rhs", "attention_nuclear_norm", "score_asymmetry", "score_min_eig",
                        "score_symmetric_psd"}
    assert row["prop5_lhs"] <= row["prop5_rhs"]
    assert 1.0 <= row["attention_nuclear_norm"] <= 5.0 + 1e-9
    assert row["score_symmetric_psd"] == 0.0  # independent random W_Q, W_K are not symmetric


@pytest.mark.parametrize("L,d", [(9, 2), (4, 2), (6, 3)])
def test_score_weights_psd_agrees_with_the_full_matrix(L, d):
    # the low-rank (QR) evaluation must match eigen/singular values of the explicit L×L matrix, incl. L ≤ 2d
    g = torch.Generator().manual_seed(L * 10 + d)
    W_Q, W_K = torch.randn(L, d, generator=g, dtype=torch.float64), torch.randn(L, d, generator=g, dtype=torch.float64)
    M = W_Q @ W_K.T
    eig = torch.linalg.eigvalsh((M + M.T) / 2) / torch.linalg.matrix_norm(M, ord=2)
    out = at.score_weights_psd(W_Q, W_K)
    assert out["asymmetry"] == pytest.approx(float(torch.linalg.matrix_norm(M - M.T) / torch.linalg.matrix_norm(M)))
    assert out["min_eig"] == pytest.approx(float(eig[0]), abs=1e-10)
    assert out["max_eig"] == pytest.approx(float(eig[-1]), abs=1e-10)
