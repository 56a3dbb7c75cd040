"""k channel transformers of one architecture as one batched model (for :func:`flatcast.trainer.fit_many`).

Many small trainings of the same model (seeds, ρ values) cost mostly per-operation overhead on a CPU and leave a
GPU idle. :class:`BatchedChannelTransformer` holds the weights of k :class:`~flatcast.models.ChannelTransformer`
members with a leading member dimension and runs SAMformer Eq. 3–4 and Algorithm 1 (RevIN) for all of them with
batched matrix products (``torch.baddbmm``), each member on its own batch of windows:

* every trainable weight of every member lives in **one** flat parameter ``flat`` of shape ``(k, P)``; the layers
  read views of it. The optimizer therefore updates one tensor (Adam's update is elementwise, so each member's
  slice follows exactly the update it would get alone), and SAM's per-member gradient norm is one reduction
  over dim 1 (:meth:`flatcast.optim.SAM.per_member`);
* the loss is the **sum** of the members' MSEs, so each member's gradient is that of its own loss;
* frozen weights (the Random Transformer's W_Q, W_K) and σReparam's power-iteration vectors u, v are buffers with
  the same leading dimension; σReparam takes one power step per member per training forward, as
  :class:`~flatcast.models.sigma_reparam.SigmaReparamLinear` does.

Supported: ``attention`` ∈ {learned, random, identity, temporal}, with or without σReparam (estimated or exact
spectral norm), with or without RevIN, with or without biases. Any other module makes
:func:`batching_unsupported` return the reason (the trainer then trains the models one after the other).
The members' initial weights are copied from the given models, so a member starts exactly where its single run
starts; :meth:`write_member` copies a member's trained weights back into its model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from flatcast.compiled import CompiledOrEager
from flatcast.models.channel_gradient import closed_form_unsupported, loss_and_gradient
from flatcast.models.revin import instance_statistics, standardize

__all__ = ["BatchedChannelTransformer", "batching_unsupported", "stack_windows"]

_LAYERS = ("query", "key", "value", "output", "head")
#: a member's row of ``flat`` holds a multiple of this many values (zeros after the weights)
_ALIGN = 64
_PADDING = "_padding"
#: ``flat``'s parameter names → the fields of :class:`~flatcast.models.channel_gradient.ChannelWeights`
_GRADIENT_FIELDS = {"qkv.weight": "qkv_weight", "qkv.bias": "qkv_bias", "value.weight": "qkv_weight",
                    "value.bias": "qkv_bias", "output.weight": "output_weight",
                    "output.bias": "output_bias", "head.weight": "head_weight", "head.bias": "head_bias",
                    "revin.affine_weight": "revin_weight", "revin.affine_bias": "revin_bias"}


@torch.no_grad()
def losses_and_flat_gradient(x, y, weights, *, revin: bool, revin_eps: float, statistics, chunks,
                             identity_attention: bool = False):
    """:func:`~flatcast.models.channel_gradient.loss_and_gradient` with the gradient laid out as ``flat``'s rows:
    ``(losses (k,), gradient (k, P), statistics)``; ``chunks`` are ``flat``'s ``(name, shape)`` pieces in order
    (the padding gets zeros; W_V's chunk is ``value.*`` for identity attention, ``qkv.*`` otherwise). One pure
    function, so that ``torch.compile`` fuses the layout into the kernel."""
    losses, gradient, statistics = loss_and_gradient(x, y, weights, revin=revin, revin_eps=revin_eps,
                                                     statistics=statistics, identity_attention=identity_attention)
    k = x.shape[0]
    pieces = [gradient.qkv_weight.new_zeros(k, math.prod(shape)) if name == _PADDING
              else getattr(gradient, _GRADIENT_FIELDS[name]).reshape(k, -1) for name, shape in chunks]
    return losses, torch.cat(pieces, dim=1), statistics


#: :func:`losses_and_flat_gradient`, compiled when ``FLATCAST_COMPILE=1`` (:mod:`flatcast.compiled`)
losses_and_flat_gradient_maybe_compiled = CompiledOrEager(losses_and_flat_gradient)


def _layer_kind(layer: nn.Module | None) -> str:
    from flatcast.models.channel_transformer import FrozenLinear
    from flatcast.models.sigma_reparam import SigmaReparamLinear

    if layer is None:
        return "absent"
    if type(layer) is nn.Linear:
        return "linear"
    if type(layer) is FrozenLinear:
        return "frozen"
    if type(layer) is SigmaReparamLinear:
        return "sigma"
    return "unknown"


def _signature(model: nn.Module) -> tuple:
    from flatcast.models.revin import RevIN

    revin = model.revin
    revin_sig = None if revin is None else (type(revin) is RevIN, revin.n_channels, revin.eps, revin.affine)
    layers = []
    for name in _LAYERS:
        layer = getattr(model, name)
        kind = _layer_kind(layer)
        shapes = tuple((n, tuple(t.shape)) for n, t in layer.state_dict().items()) if layer is not None else ()
        exact = getattr(layer, "exact_spectral_norm", None)
        layers.append((name, kind, shapes, exact))
    return (model.lookback, model.horizon, model.n_channels, model.d_model, model.attention_kind,
            model.use_revin, revin_sig, tuple(layers))


def batching_unsupported(models: Sequence[nn.Module]) -> str | None:
    """``None`` when ``models`` can be trained as one :class:`BatchedChannelTransformer`, else the reason."""
    from flatcast.models.channel_transformer import ChannelTransformer

    if len(models) == 0:
        return "no models"
    for i, model in enumerate(models):
        if type(model) is not ChannelTransformer:
            return f"model {i} is a {type(model).__name__}, not a ChannelTransformer"
        if model.attention_kind not in ("learned", "random", "identity", "temporal"):
            return f"model {i} has attention {model.attention_kind!r}"
        if hasattr(model, "training_loss"):
            return f"model {i} defines its own training_loss"
    known = {"linear": ({"weight", "bias"}, set()), "frozen": (set(), {"weight", "bias"}),
             "sigma": ({"weight", "bias", "gamma"}, {"u", "v"})}
    first = models[0]
    for name in _LAYERS:  # only the tensors this module knows how to use (a new one would be silently ignored)
        layer = getattr(first, name)
        kind = _layer_kind(layer)
        if kind in known:
            params, buffers = known[kind]
            if not ({n for n, _ in layer.named_parameters()} <= params
                    and {n for n, _ in layer.named_buffers()} <= buffers):
                return f"layer {name!r} holds tensors the batched model does not know"
    top_level = {n.split(".")[0] for n, _ in list(first.named_parameters()) + list(first.named_buffers())}
    if not top_level <= set(_LAYERS) | {"revin"}:
        return f"the model holds tensors outside its known layers: {sorted(top_level - set(_LAYERS) - {'revin'})}"
    signature = _signature(models[0])
    for layer in signature[-1]:
        if layer[1] == "unknown":
            return f"layer {layer[0]!r} is of a kind the batched model does not know"
    if signature[6] is not None and not signature[6][0]:
        return "the RevIN module is not flatcast's RevIN"
    for i, model in enumerate(models[1:], start=1):
        if _signature(model) != signature:
            return f"model {i} differs in architecture from model 0"
    devices = {t.device for m in models for t in m.state_dict().values()}
    dtypes = {p.dtype for m in models for p in m.parameters()}
    if len(devices) > 1 or len(dtypes) > 1:
        return "the models do not share one device and dtype"
    return None


def stack_windows(windows: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Gather a batch per member: ``windows`` ``(N, D, T)``, ``index`` ``(k, B)`` → ``(k, B, D, T)``."""
    return windows[index]


def _unit_rows(vectors: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return vectors / torch.linalg.vector_norm(vectors, dim=1, keepdim=True).clamp_min(eps)


class BatchedChannelTransformer(nn.Module):
    """k :class:`~flatcast.models.ChannelTransformer` members of one architecture, weights stacked on dim 0.

    ``forward(x)`` takes ``(k, B, D, L)`` (one batch per member) or ``(B, D, L)`` (the same windows for every
    member) and returns ``(k, B, D, H)``. :meth:`member_losses` returns the k MSEs (SAMformer Eq. 1).
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        reason = batching_unsupported(models)
        if reason is not None:
            raise ValueError(f"cannot batch these models: {reason}")
        first = models[0]
        self.k = len(models)
        self.lookback, self.horizon, self.n_channels = first.lookback, first.horizon, first.n_channels
        self.d_model, self.attention_kind = first.d_model, first.attention_kind
        self.temporal = first.attention_kind == "temporal"
        self.kinds = {name: _layer_kind(getattr(first, name)) for name in _LAYERS}
        self.has_revin = first.revin is not None
        self.revin_affine = self.has_revin and first.revin.affine
        self.revin_eps = first.revin.eps if self.has_revin else 0.0
        self.exact_norm = {name: bool(getattr(getattr(first, name), "exact_spectral_norm", False))
                           for name in _LAYERS}

        trainable = [name for name, p in first.named_parameters() if p.requires_grad]
        # W_Q, W_K, W_V (and their biases) side by side, so one view feeds one product for all three
        fused = [f"{layer}.{part}" for part in ("weight", "bias") for layer in ("query", "key", "value")]
        order = [n for n in fused if n in trainable] + [n for n in trainable if n not in fused]
        identity = self.kinds["query"] == "absent"  # A = I: no W_Q, W_K; W right after W_V: one [W_V; W]
        if all(f"{layer}.weight" in trainable for layer in _LAYERS) or (  # W right after W_Q, W_K, W_V: [W_QKV; W]
                identity and all(f"{layer}.weight" in trainable for layer in ("value", "output", "head"))):
            order.remove("head.weight")
            order.insert(order.index("value.weight") + 1, "head.weight")
        self.layout: dict[str, tuple[int, tuple[int, ...]]] = {}
        offset = 0
        for name in order:
            shape = tuple(first.get_parameter(name).shape)
            self.layout[name] = (offset, shape)
            offset += math.prod(shape)
        # each member's row is padded with zeros to a multiple of _ALIGN values: elementwise kernels that treat a
        # tensor's last few values apart (Adam's fused update finishes with a scalar loop) then treat every
        # member's values alike whatever k is, so a member's numbers do not depend on the size of its batch
        self.n_padding = -offset % _ALIGN
        self.n_per_member = offset + self.n_padding
        with torch.no_grad():
            rows = [torch.cat([m.get_parameter(n).detach().reshape(-1) for n in order]
                              + [torch.zeros(self.n_padding, dtype=first.get_parameter(order[0]).dtype,
                                             device=first.get_parameter(order[0]).device)]) for m in models]
        self.flat = nn.Parameter(torch.stack(rows))
        self.fused_qkv = (self.kinds["query"] == self.kinds["key"] == self.kinds["value"] == "linear")
        # the pieces one split of ``flat`` yields: W_Q, W_K, W_V (and their biases) as one piece when fused
        self._chunks: list[tuple[str, tuple[int, ...]]] = []
        for name in order:
            layer, part = name.split(".", 1)
            if self.fused_qkv and layer in ("query", "key", "value"):
                if layer == "query":
                    shape = self.layout[name][1]
                    self._chunks.append((f"qkv.{part}", (3 * shape[0], *shape[1:])))
                continue
            self._chunks.append((name, self.layout[name][1]))
        if self.n_padding:
            self._chunks.append((_PADDING, (self.n_padding,)))
        self._chunk_sizes = [math.prod(shape) for _, shape in self._chunks]
        self._chunk_layout = tuple((name, tuple(shape)) for name, shape in self._chunks)  # hashable, for compile

        # buffers: frozen W_Q/W_K (and biases), σReparam's u/v; stored under dotted names with "__" for "."
        self.buffer_names = [name for name, _ in first.named_buffers()]
        for name in self.buffer_names:
            stacked = torch.stack([m.get_buffer(name).detach() for m in models])
            self.register_buffer(name.replace(".", "__"), stacked.clone())
        self.mutable_buffers = [n for n in self.buffer_names if n.endswith(".u") or n.endswith(".v")]
        # RevIN statistics of the last training batch: SAM evaluates the same batch twice (Eq. 2)
        self._statistics_cache: tuple | None = None
        #: the members' loss and gradient can come from the hand-derived gradient (no autograd graph)
        self.identity_attention = identity
        self.closed_form = (closed_form_unsupported(first) is None and (self.fused_qkv or self.identity_attention)
                            and not self.buffer_names)
        self._closed_form_cache: tuple | None = None
        self._weights_cache: tuple | None = None

    # ------------------------------------------------------------------ weights
    def param(self, name: str) -> torch.Tensor:
        """Member-stacked view ``(k, *shape)`` of the trainable tensor ``name`` of the single model."""
        offset, shape = self.layout[name]
        return self.flat[:, offset:offset + math.prod(shape)].view(self.k, *shape)

    def buffer(self, name: str) -> torch.Tensor:
        return getattr(self, name.replace(".", "__"))

    def _views(self) -> dict[str, torch.Tensor]:
        """Every trainable tensor as a ``(k, *shape)`` view of ``flat``, from one ``split`` (one autograd node,
        whose backward writes all gradients into one ``(k, P)`` tensor), plus ``qkv.weight``/``qkv.bias``
        (W_Q, W_K, W_V stacked, ``(k, 3 d_m, in)``) when all three are plain trainable linear maps."""
        pieces = self.flat.split(self._chunk_sizes, dim=1)
        views = {}
        for (name, shape), piece in zip(self._chunks, pieces):
            views[name] = piece.view(self.k, *shape)
        return views

    def _get(self, name: str, views: dict[str, torch.Tensor]) -> torch.Tensor | None:
        if name in views:
            return views[name]
        if name in self.layout:  # inside a fused chunk
            fused = views[f"qkv.{name.split('.')[1]}"]
            index = ("query", "key", "value").index(name.split(".")[0])
            return fused.chunk(3, dim=1)[index]
        if name in self.buffer_names:
            return self.buffer(name)
        return None

    def _bias(self, layer: str, views: dict[str, torch.Tensor]) -> torch.Tensor | None:
        return self._get(f"{layer}.bias", views)

    def _weight(self, layer: str, views: dict[str, torch.Tensor]) -> torch.Tensor:
        """The layer's (effective) weight ``(k, out, in)`` in nn.Linear's layout (σReparam Eq. 5 applied)."""
        weight = self._get(f"{layer}.weight", views)
        if self.kinds[layer] != "sigma":
            return weight
        gamma = views[f"{layer}.gamma"]  # (k,)
        if self.exact_norm[layer]:
            sigma = torch.linalg.matrix_norm(weight, ord=2)
        else:
            u, v = self.buffer(f"{layer}.u"), self.buffer(f"{layer}.v")
            if self.training and torch.is_grad_enabled():  # one power step, as SigmaReparamLinear.forward
                with torch.no_grad():
                    detached = weight.detach()
                    v_new = _unit_rows(torch.einsum("koi,ko->ki", detached, u))
                    u_new = _unit_rows(torch.einsum("koi,ki->ko", detached, v_new))
                    u.copy_(u_new)
                    v.copy_(v_new)
            sigma = torch.einsum("ko,ko->k", u.clone(), torch.einsum("koi,ki->ko", weight, v.clone()))
        return (gamma / sigma)[:, None, None] * weight

    @staticmethod
    def _linear(tokens: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """``tokens`` ``(k, n, in)`` @ ``weightᵀ`` + ``bias``: ``(k, n, out)``."""
        if bias is None:
            return torch.bmm(tokens, weight.transpose(1, 2))
        return torch.baddbmm(bias.unsqueeze(1), tokens, weight.transpose(1, 2))

    # ------------------------------------------------------------------ the model (Eq. 3–4, Algorithm 1)
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, dm = self.k, self.d_model
        if x.ndim == 3:
            x = x.unsqueeze(0).expand(k, *x.shape)
        if x.ndim != 4 or x.shape[0] != k or x.shape[2] != self.n_channels or x.shape[3] != self.lookback:
            raise ValueError(f"x must be (k={k}, B, D={self.n_channels}, L={self.lookback}) or (B, D, L), "
                             f"got {tuple(x.shape)}")
        batch = x.shape[1]
        views = self._views()
        if self.has_revin:
            cached = self._statistics_cache
            if cached is not None and cached[0] is x and cached[1] == x._version:
                mean, std = cached[2], cached[3]  # SAM's second pass on the same batch: same μ, s
            else:
                mean, std = instance_statistics(x, self.revin_eps)
                self._statistics_cache = (x, x._version, mean, std) if self.training else None
            if self.revin_affine:
                affine_weight = views["revin.affine_weight"][:, None, :, None]
                affine_bias = views["revin.affine_bias"][:, None, :, None]
                z = standardize(x, mean, std, affine_weight, affine_bias)
            else:
                z = standardize(x, mean, std)
        else:
            z = x
        tokens = z.transpose(2, 3) if self.temporal else z  # (k, B, n_tokens, token_dim)
        n_tokens, token_dim = tokens.shape[2], tokens.shape[3]
        flat_tokens = tokens.reshape(k, batch * n_tokens, token_dim)

        if self.kinds["query"] == "absent":  # identity attention: A = I
            mixed_values = self._linear(flat_tokens, self._weight("value", views), self._bias("value", views))
        else:
            if self.fused_qkv:
                weight, bias = views["qkv.weight"], views.get("qkv.bias")
            else:
                weight = torch.cat([self._weight(n, views) for n in ("query", "key", "value")], dim=1)
                biases = [self._bias(n, views) for n in ("query", "key", "value")]
                bias = None if biases[0] is None else torch.cat(biases, dim=1)
            qkv = self._linear(flat_tokens, weight, bias).view(k * batch, n_tokens, 3 * dm)
            queries, keys, values = qkv.split(dm, dim=2)
            scores = torch.bmm(queries, keys.transpose(1, 2)) / math.sqrt(dm)
            attention = torch.softmax(scores, dim=-1)
            mixed_values = torch.bmm(attention, values).view(k, batch * n_tokens, dm)
        output_weight, output_bias = self._weight("output", views), self._bias("output", views)
        head_weight, head_bias = self._weight("head", views), self._bias("head", views)
        if self.temporal:
            mixed = flat_tokens + self._linear(mixed_values, output_weight, output_bias)
            mixed = mixed.view(k, batch, n_tokens, token_dim).transpose(2, 3).reshape(k, batch * token_dim, n_tokens)
        else:
            # T + A T W_V W_O: the residual is the product's accumulator; W_O's bias b_O is added to every token
            # and so passes through the head as b_O W (+ b): folded into the head's bias (one full-size op less)
            mixed = torch.baddbmm(flat_tokens, mixed_values, output_weight.transpose(1, 2))
            if output_bias is not None:
                folded = torch.bmm(output_bias.unsqueeze(1), head_weight.transpose(1, 2)).squeeze(1)
                head_bias = folded if head_bias is None else head_bias + folded
        out = self._linear(mixed, head_weight, head_bias).view(k, batch, self.n_channels, self.horizon)
        if self.has_revin:
            if self.revin_affine:
                out = (out - affine_bias) / (affine_weight + self.revin_eps * self.revin_eps)
            out = out * std + mean
        return out

    def member_losses(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The k members' MSEs ``(k,)`` of their forecasts of ``x`` ``(k, B, D, L)`` against ``y`` ``(k, B, D, H)``."""
        return (self(x) - y).square().mean(dim=(1, 2, 3))

    def _closed_form_weights(self):
        """The members' weights as a :class:`~flatcast.models.channel_gradient.ChannelWeights` of views of ``flat``
        (kept while ``flat``'s storage and k stay the same; W_Q, W_K, W_V and W are one ``(k, 3 d_m + H, L)`` view;
        W_V and W one ``(k, d_m + H, L)`` view for identity attention)."""
        from flatcast.models.channel_gradient import ChannelWeights

        key = (self.flat.data_ptr(), self.k, self.flat.dtype, self.flat.device)
        if self._weights_cache is not None and self._weights_cache[0] == key:
            return self._weights_cache[1]
        views = {name: view.detach() for name, view in self._views().items()}
        maps = "value" if self.identity_attention else "qkv"  # W_V alone, or W_Q, W_K, W_V stacked
        qkv, head = views[f"{maps}.weight"], views["head.weight"]
        offset = self.layout["value.weight" if self.identity_attention else "query.weight"][0]
        rows = qkv.shape[1] + head.shape[1]
        stacked = None
        if self.layout["head.weight"][0] == offset + qkv[0].numel() and qkv.shape[2] == head.shape[2]:
            stacked = self.flat.detach()[:, offset:offset + rows * qkv.shape[2]].view(self.k, rows, qkv.shape[2])
        weights = ChannelWeights(
            qkv, views.get(f"{maps}.bias"), views["output.weight"], views.get("output.bias"), head, views.get("head.bias"),
            views.get("revin.affine_weight"), views.get("revin.affine_bias"), stacked_weight=stacked)
        self._weights_cache = (key, weights)
        return weights

    @torch.no_grad()
    def member_losses_and_gradient(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The k members' MSEs ``(k,)`` (as :meth:`member_losses`), with the gradient of their sum written into
        ``flat.grad`` (replacing it) by the hand-derived gradient
        (:func:`flatcast.models.channel_gradient.loss_and_gradient`; compiled when ``FLATCAST_COMPILE=1``, see
        :mod:`flatcast.compiled`), when :attr:`closed_form` is true. A second
        call on the same ``x`` (SAM's perturbed evaluation) reuses RevIN's statistics of the first."""
        if not self.closed_form:
            raise RuntimeError("this batched model has no closed-form gradient (see BatchedChannelTransformer."
                               "closed_form); use member_losses(x, y).sum().backward()")
        if x.ndim == 3:
            x = x.unsqueeze(0).expand(self.k, *x.shape)
        weights = self._closed_form_weights()
        cached = self._closed_form_cache
        statistics = cached[2] if cached is not None and cached[0] is x and cached[1] == x._version else None
        losses, self.flat.grad, statistics = losses_and_flat_gradient_maybe_compiled(
            x, y, weights, revin=self.has_revin, revin_eps=self.revin_eps, statistics=statistics,
            chunks=self._chunk_layout, identity_attention=self.identity_attention)
        self._closed_form_cache = (x, x._version, statistics) if statistics is not None else None
        return losses

    @torch.no_grad()
    def evaluate_members(self, windowset, batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
        """Every member's MSE and MAE ``(k,)`` float64 over all elements of ``windowset`` (as
        :func:`flatcast.trainer.evaluate`: float64 sums divided by the element count), in eval mode."""
        was_training = self.training
        self.eval()
        try:
            chunk = max(1, batch_size // self.k)
            squared = torch.zeros(self.k, dtype=torch.float64, device=self.flat.device)
            absolute = torch.zeros_like(squared)
            n_elements = 0
            for start in range(0, len(windowset.x), chunk):
                x = windowset.x[start:start + chunk].to(self.flat.device)
                y = windowset.y[start:start + chunk].to(self.flat.device)
                error = self(x).to(torch.float64) - y.to(torch.float64)
                squared += error.square().sum(dim=(1, 2, 3))
                absolute += error.abs().sum(dim=(1, 2, 3))
                n_elements += y.numel()
        finally:
            self.train(was_training)
        return squared / n_elements, absolute / n_elements

    # ------------------------------------------------------------------ members in and out
    @torch.no_grad()
    def member_state(self, index: int) -> dict[str, torch.Tensor]:
        """Copies of member ``index``'s trainable tensors and changing buffers, by the single model's names."""
        state = {name: self.param(name)[index].clone() for name in self.layout}
        state.update({name: self.buffer(name)[index].clone() for name in self.mutable_buffers})
        return state

    @staticmethod
    @torch.no_grad()
    def load_member_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
        """Copy a :meth:`member_state` into the single ``model`` (its parameters and σReparam buffers)."""
        parameters, buffers = dict(model.named_parameters()), dict(model.named_buffers())
        for name, tensor in state.items():
            (parameters[name] if name in parameters else buffers[name]).copy_(tensor)

    def write_member(self, index: int, model: nn.Module) -> None:
        """Copy member ``index``'s current weights into ``model``."""
        self.load_member_state(model, self.member_state(index))

    @torch.no_grad()
    def read_buffers_from(self, index: int, model: nn.Module) -> None:
        """Take σReparam's u, v of member ``index`` back from ``model`` (after a callback ran it)."""
        buffers = dict(model.named_buffers())
        for name in self.mutable_buffers:
            self.buffer(name)[index].copy_(buffers[name])

    @torch.no_grad()
    def select(self, keep: Sequence[int]) -> None:
        """Keep only the members at positions ``keep`` (in that order): ``flat`` becomes a new leaf parameter."""
        index = torch.as_tensor(list(keep), dtype=torch.long, device=self.flat.device)
        self.flat = nn.Parameter(self.flat.detach().index_select(0, index).clone())
        for name in self.buffer_names:
            attribute = name.replace(".", "__")
            setattr(self, attribute, getattr(self, attribute).index_select(0, index).clone())
        self.k = len(keep)
