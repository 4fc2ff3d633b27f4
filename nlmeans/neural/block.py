"""Non-local neural blocks (Wang, Girshick, Gupta and He, CVPR 2018).

A non-local operation computes, for every query position ``i``,

.. math::

    y_i = \\frac{1}{\\mathcal{C}(x)} \\sum_j f(x_i, x_j)\\, g(x_j),
    \\qquad z_i = W_z\\, y_i + x_i ,

where ``j`` runs over all key positions (or, with ``window=r``, over the
``(2r+1)^dim`` neighbourhood of ``i``). This module provides

* :func:`non_local_attention`, the functional form that takes the already
  embedded ``theta``, ``phi`` and ``g`` feature maps, and
* :class:`NonLocalBlock1d`, :class:`NonLocalBlock2d` and
  :class:`NonLocalBlock3d`, the ``nn.Module`` blocks with the 1x1
  embeddings, optional sub-sampling, the output projection ``W_z`` and the
  residual connection.

None of the code paths stores the ``N x N`` affinity matrix:

* softmax modes (``"gaussian"``, ``"embedded_gaussian"``) call
  :func:`torch.nn.functional.scaled_dot_product_attention` with 4-D inputs and
  equal query / key / value widths, which selects the memory-efficient
  (flash, online-softmax) kernel on CPU and GPU (inputs are made contiguous:
  a transposed, non-unit-stride view silently falls back to the N x N path);
* ``"dot_product"`` is re-associated as ``theta (phi^T g) / N``;
* ``"concatenation"`` splits ``w_f^T [theta_i, phi_j] = a_i + b_j`` and runs a
  custom autograd function over chunks of query rows (forward and backward);
* ``window=r`` loops over the ``(2r+1)^dim`` offsets in a custom autograd
  function (in-place accumulation in both passes) and only ever keeps
  ``O(N * (C + (2r+1)^dim))`` numbers.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "MODES",
    "NonLocalBlock1d",
    "NonLocalBlock2d",
    "NonLocalBlock3d",
    "non_local_attention",
]

#: The pairwise functions ``f`` of the paper (Section 3.2).
MODES = ("gaussian", "embedded_gaussian", "dot_product", "concatenation")
_SOFTMAX_MODES = ("gaussian", "embedded_gaussian")

# Upper bound (bytes) on one (batch x rows x keys) affinity chunk of the
# concatenation mode; the backward pass keeps about three of them alive.
_CHUNK_BYTES = 32 * 2**20


# --------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------


def _check_mode(mode: object) -> str:
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return mode


def _autocast_enabled(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` (torch < 2.4 takes no argument
    and answers for CUDA; its CPU autocast has its own query)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # pragma: no cover - torch 2.2 / 2.3
        if device_type == "cpu":
            return torch.is_autocast_cpu_enabled()
        return torch.is_autocast_enabled()


def _is_positive_int(value: object) -> bool:
    """An integer >= 1 (NumPy integers too), not a bool."""
    return not isinstance(value, bool) and isinstance(value, numbers.Integral) and value >= 1


def _check_window(window: object) -> int | None:
    if window is None:
        return None
    if isinstance(window, bool) or not isinstance(window, numbers.Integral) or window < 0:
        raise ValueError(
            f"window must be None (global attention) or an integer radius >= 0, got {window!r}"
        )
    return int(window)


def _check_attention_inputs(
    theta: Tensor,
    phi: Tensor,
    g: Tensor,
    mode: str,
    window: int | None,
    concat_weights: Tensor | None,
) -> int:
    for name, t in (("theta", theta), ("phi", phi), ("g", g)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.ndim not in (3, 4, 5):
            raise ValueError(
                f"{name} must have shape (B, C, *spatial) with 1 to 3 spatial dimensions, "
                f"got shape {tuple(t.shape)}"
            )
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating point tensor, got dtype {t.dtype}")
    if not (theta.ndim == phi.ndim == g.ndim):
        raise ValueError(
            "theta, phi and g must have the same number of dimensions, got shapes "
            f"{tuple(theta.shape)}, {tuple(phi.shape)}, {tuple(g.shape)}"
        )
    if not (theta.shape[0] == phi.shape[0] == g.shape[0]):
        raise ValueError(
            "theta, phi and g must have the same batch size, got "
            f"{theta.shape[0]}, {phi.shape[0]}, {g.shape[0]}"
        )
    if theta.shape[1] != phi.shape[1]:
        raise ValueError(
            f"theta and phi must have the same number of channels, got {theta.shape[1]} and {phi.shape[1]}"
        )
    if phi.shape[2:] != g.shape[2:]:
        raise ValueError(
            "phi and g must share the key grid (same spatial shape), got "
            f"{tuple(phi.shape[2:])} and {tuple(g.shape[2:])}"
        )
    if window is not None and theta.shape[2:] != phi.shape[2:]:
        raise ValueError(
            "window attention needs the key grid to equal the query grid, got query "
            f"{tuple(theta.shape[2:])} and key {tuple(phi.shape[2:])} (sub-sampled keys "
            "cannot be combined with a window)"
        )
    if mode == "concatenation":
        if concat_weights is None:
            raise ValueError("mode='concatenation' needs concat_weights of shape (2 * C_theta,)")
        if concat_weights.shape != (2 * theta.shape[1],):
            raise ValueError(
                f"concat_weights must have shape ({2 * theta.shape[1]},) = (2 * C_theta,), "
                f"got {tuple(concat_weights.shape)}"
            )
    elif concat_weights is not None:
        raise ValueError(f"concat_weights is only used by mode='concatenation', not {mode!r}")
    return theta.ndim - 2


# --------------------------------------------------------------------------
# concatenation mode: chunked custom autograd function
# --------------------------------------------------------------------------


def _chunk_rows(batch: int, keys: int, itemsize: int) -> int:
    return max(1, _CHUNK_BYTES // max(1, batch * keys * itemsize))


class _ConcatenationAttention(torch.autograd.Function):
    """``y_i = (1/M) sum_j relu(a_i + b_j) v_j`` over chunks of query rows.

    ``a``: (B, N), ``b``: (B, M), ``v``: (B, M, Cv) -> ``y``: (B, N, Cv).
    Only ``a``, ``b`` and ``v`` are saved; the (rows x M) affinity chunk is
    recomputed in the backward pass, so memory stays bounded.
    """

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, v: Tensor) -> Tensor:
        batch, n = a.shape
        m = b.shape[1]
        rows = _chunk_rows(batch, m, a.element_size())
        out = v.new_empty(batch, n, v.shape[2])
        for start in range(0, n, rows):
            stop = min(n, start + rows)
            f = torch.relu(a[:, start:stop, None] + b[:, None, :])  # (B, rows, M)
            out[:, start:stop] = torch.bmm(f, v)  # (B, rows, Cv)
        out.div_(m)
        ctx.save_for_backward(a, b, v)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        a, b, v = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: a second derivative follows
            return _differentiable_backward(
                _concatenation_reference, (a, b, v), ctx.needs_input_grad, grad_out
            )
        batch, n = a.shape
        m = b.shape[1]
        rows = _chunk_rows(batch, m, a.element_size())
        go = grad_out / m  # (B, N, Cv)
        need_a, need_b, need_v = ctx.needs_input_grad
        grad_a = torch.empty_like(a) if need_a else None
        grad_b = torch.zeros_like(b) if need_b else None
        grad_v = torch.zeros_like(v) if need_v else None
        for start in range(0, n, rows):
            stop = min(n, start + rows)
            pre = a[:, start:stop, None] + b[:, None, :]  # (B, rows, M)
            if need_v:
                grad_v += torch.bmm(torch.relu(pre).transpose(1, 2), go[:, start:stop])
            if need_a or need_b:
                dpre = torch.bmm(go[:, start:stop], v.transpose(1, 2))  # (B, rows, M)
                dpre.mul_(pre > 0)
                if need_a:
                    grad_a[:, start:stop] = dpre.sum(2)
                if need_b:
                    grad_b += dpre.sum(1)
        return grad_a, grad_b, grad_v


def _concatenation_reference(a: Tensor, b: Tensor, v: Tensor) -> Tensor:
    """:class:`_ConcatenationAttention` in plain autograd ops (the (B, N, M)
    affinities are kept: for second derivatives only)."""
    return torch.bmm(torch.relu(a[:, :, None] + b[:, None, :]), v) / b.shape[1]


def _differentiable_backward(reference, inputs, needs, grad_out):
    """Gradients of ``reference(*inputs)`` as a differentiable graph.

    The custom functions' backward passes accumulate in place under no_grad,
    which is right for first derivatives only. When autograd asks for a graph
    of the gradients (``create_graph=True``: gradient penalties, Hessian-vector
    products), they are recomputed here from the saved inputs, which are still
    attached to the forward graph, so second derivatives are exact.
    """
    wanted = [i for i, t in enumerate(inputs) if needs[i]]
    out = reference(*inputs)
    grads = torch.autograd.grad(
        out, [inputs[i] for i in wanted], grad_out, create_graph=True, allow_unused=True
    )
    result = [None] * len(needs)
    for i, grad in zip(wanted, grads):
        result[i] = torch.zeros_like(inputs[i]) if grad is None else grad
    return tuple(result)


# --------------------------------------------------------------------------
# global and windowed attention
# --------------------------------------------------------------------------


def _global_attention(
    theta: Tensor, phi: Tensor, g: Tensor, mode: str, concat_weights: Tensor | None
) -> Tensor:
    batch, cq = theta.shape[:2]
    cv = g.shape[1]
    spatial = theta.shape[2:]
    q = theta.flatten(2).transpose(1, 2)  # (B, N, Cq)
    k = phi.flatten(2).transpose(1, 2)  # (B, M, Cq)
    v = g.flatten(2).transpose(1, 2)  # (B, M, Cv)
    m = k.shape[1]
    if mode in _SOFTMAX_MODES:
        # The CPU flash kernel (online softmax, no N x M matrix) is only chosen
        # for 4-D inputs whose q, k and v share the last dimension; zero
        # channels change neither the dot products nor the kept output slice.
        width = max(cq, cv)
        if cq < width:
            q = F.pad(q, (0, width - cq))
            k = F.pad(k, (0, width - cq))
        if cv < width:
            v = F.pad(v, (0, width - cv))
        # The flash kernel also needs a unit stride along the last dimension
        # (the transposed views above have stride N): copy, O(N * width).
        y = F.scaled_dot_product_attention(
            q.contiguous().unsqueeze(1),
            k.contiguous().unsqueeze(1),
            v.contiguous().unsqueeze(1),
            scale=1.0,
        )  # (B, 1, N, width)
        y = y.squeeze(1)[..., :cv]  # (B, N, Cv)
    elif mode == "dot_product":
        # 1/M goes in first: summed over M keys before it, phi^T g overflows
        # float16 (autocast) long before the result does.
        y = torch.bmm(q, torch.bmm(k.transpose(1, 2), v / m))  # (B, N, Cv)
    else:  # concatenation
        assert concat_weights is not None
        a = torch.matmul(q, concat_weights[:cq])  # (B, N)
        b = torch.matmul(k, concat_weights[cq:])  # (B, M)
        y = _ConcatenationAttention.apply(a, b, v)  # (B, N, Cv)
    return y.transpose(1, 2).reshape(batch, cv, *spatial)  # (B, Cv, *S)


def _window_offsets(dim: int, radius: int) -> list[tuple[int, ...]]:
    return list(itertools.product(range(-radius, radius + 1), repeat=dim))


def _window_valid(spatial: Sequence[int], radius: int, device: torch.device) -> Tensor:
    """Boolean (K, *S): is query ``i`` + offset ``k`` inside the grid."""
    dim = len(spatial)
    width = 2 * radius + 1
    valid = None
    off = torch.arange(-radius, radius + 1, device=device)
    for axis, n in enumerate(spatial):
        pos = torch.arange(n, device=device)
        moved = pos[None, :] + off[:, None]  # (2r+1, n)
        m = (moved >= 0) & (moved < n)
        shape = [1] * (2 * dim)
        shape[axis] = width
        shape[dim + axis] = n
        m = m.reshape(shape)
        valid = m if valid is None else valid & m
    assert valid is not None
    return valid.reshape(width**dim, *spatial)


def _shifted(padded: Tensor, offset: Sequence[int], spatial: Sequence[int], radius: int) -> Tensor:
    """View of ``padded`` (zero-padded by ``radius``) at ``position + offset``."""
    index = tuple(slice(radius + o, radius + o + n) for o, n in zip(offset, spatial))
    return padded[(Ellipsis,) + index]


def _window_normalise(scores: Tensor, valid: Tensor, mode: str) -> Tensor:
    """Weights f / C from the (B, K, *S) scores of every (query, offset) pair."""
    if mode in _SOFTMAX_MODES:
        # Out-of-grid neighbours are excluded from the normalisation, not
        # treated as zero-valued features. The centre is always valid.
        return scores.masked_fill(~valid, float("-inf")).softmax(dim=1)
    if mode == "concatenation":
        scores = torch.relu(scores)
    count = valid.sum(0).to(scores.dtype)  # (*S): number of valid neighbours
    return scores.masked_fill(~valid, 0.0) / count


class _WindowAttention(torch.autograd.Function):
    """Windowed non-local attention with a hand-written, in-place backward.

    ``q``: (B, Cq, *S), ``k``: (B, Cq, *S), ``v``: (B, Cv, *S) -> (B, Cv, *S).
    Scores are ``q_i . k_{i+o}`` for the ``K = (2r+1)^dim`` offsets ``o``
    (``mode="concatenation"``: ``Cq == 1`` and the pre-activation
    ``q_i + k_{i+o}``). Only the inputs and the (B, K, *S) weights are saved;
    gradients are accumulated in place offset by offset, so the backward pass
    needs ``O(B (C N + K N))`` memory instead of one (B, C, *S) gradient per
    offset.
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, mode: str, radius: int) -> Tensor:
        dim = q.ndim - 2
        spatial = tuple(q.shape[2:])
        offsets = _window_offsets(dim, radius)
        pad = [radius] * (2 * dim)
        valid = _window_valid(spatial, radius, q.device)  # (K, *S)
        k_pad = F.pad(k, pad)  # (B, Cq, *(S + 2r))
        scores = q.new_empty(q.shape[0], len(offsets), *spatial)  # (B, K, *S)
        for idx, o in enumerate(offsets):
            shifted = _shifted(k_pad, o, spatial, radius)
            if mode == "concatenation":
                scores[:, idx] = q[:, 0] + shifted[:, 0]
            else:
                scores[:, idx] = (q * shifted).sum(1)
        del k_pad
        weights = _window_normalise(scores, valid, mode)  # (B, K, *S)
        del scores
        v_pad = F.pad(v, pad)  # (B, Cv, *(S + 2r))
        out = torch.zeros_like(v)  # (B, Cv, *S)
        for idx, o in enumerate(offsets):
            out.addcmul_(weights[:, idx : idx + 1], _shifted(v_pad, o, spatial, radius))
        ctx.save_for_backward(q, k, v, weights)
        ctx.mode = mode
        ctx.radius = radius
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        q, k, v, weights = ctx.saved_tensors
        mode, radius = ctx.mode, ctx.radius
        if torch.is_grad_enabled():  # create_graph=True: a second derivative follows
            grads = _differentiable_backward(
                lambda q, k, v: _window_reference(q, k, v, mode, radius),
                (q, k, v),
                ctx.needs_input_grad[:3],
                grad_out,
            )
            return (*grads, None, None)
        need_q, need_k, need_v = ctx.needs_input_grad[:3]
        dim = q.ndim - 2
        spatial = tuple(q.shape[2:])
        offsets = _window_offsets(dim, radius)
        pad = [radius] * (2 * dim)
        inner = (Ellipsis,) + tuple(slice(radius, radius + n) for n in spatial)

        grad_out = grad_out.contiguous()
        v_pad = F.pad(v, pad)
        grad_v_pad = torch.zeros_like(v_pad) if need_v else None
        d_weights = torch.empty_like(weights)  # (B, K, *S)
        for idx, o in enumerate(offsets):
            d_weights[:, idx] = (grad_out * _shifted(v_pad, o, spatial, radius)).sum(1)
            if grad_v_pad is not None:
                _shifted(grad_v_pad, o, spatial, radius).addcmul_(
                    weights[:, idx : idx + 1], grad_out
                )
        del v_pad
        grad_v = grad_v_pad[inner] if grad_v_pad is not None else None

        grad_q = grad_k = None
        if need_q or need_k:
            # d weights -> d scores (invalid neighbours have weight 0 / mask 0)
            if mode in _SOFTMAX_MODES:
                d_scores = weights * (d_weights - (d_weights * weights).sum(1, keepdim=True))
            else:
                valid = _window_valid(spatial, radius, q.device)
                count = valid.sum(0).to(weights.dtype)
                # concatenation: relu' = 1 exactly where the weight is > 0
                mask = weights > 0 if mode == "concatenation" else valid
                d_scores = d_weights * mask / count
            del d_weights
            k_pad = F.pad(k, pad)
            grad_q = torch.zeros_like(q)
            grad_k_pad = torch.zeros_like(k_pad)
            for idx, o in enumerate(offsets):
                ds = d_scores[:, idx : idx + 1]  # (B, 1, *S)
                if mode == "concatenation":
                    grad_q += ds
                    _shifted(grad_k_pad, o, spatial, radius).add_(ds)
                else:
                    grad_q.addcmul_(ds, _shifted(k_pad, o, spatial, radius))
                    _shifted(grad_k_pad, o, spatial, radius).addcmul_(ds, q)
            grad_k = grad_k_pad[inner]
            if not need_q:
                grad_q = None
            if not need_k:
                grad_k = None
        return grad_q, grad_k, grad_v, None, None


def _window_reference(q: Tensor, k: Tensor, v: Tensor, mode: str, radius: int) -> Tensor:
    """:class:`_WindowAttention` in plain autograd ops (one (B, C, *S) tensor
    per offset is kept: for second derivatives only)."""
    dim = q.ndim - 2
    spatial = tuple(q.shape[2:])
    offsets = _window_offsets(dim, radius)
    pad = [radius] * (2 * dim)
    k_pad, v_pad = F.pad(k, pad), F.pad(v, pad)
    if mode == "concatenation":
        scores = [q[:, 0] + _shifted(k_pad, o, spatial, radius)[:, 0] for o in offsets]
    else:
        scores = [(q * _shifted(k_pad, o, spatial, radius)).sum(1) for o in offsets]
    weights = _window_normalise(
        torch.stack(scores, 1), _window_valid(spatial, radius, q.device), mode
    )  # (B, K, *S)
    return sum(
        weights[:, idx : idx + 1] * _shifted(v_pad, o, spatial, radius)
        for idx, o in enumerate(offsets)
    )


def _window_attention(
    theta: Tensor,
    phi: Tensor,
    g: Tensor,
    mode: str,
    radius: int,
    concat_weights: Tensor | None,
) -> Tensor:
    if mode == "concatenation":
        assert concat_weights is not None
        cq = theta.shape[1]
        # w_f^T [theta_i; phi_j] = a_i + b_j: one channel each.
        q = torch.einsum("bc...,c->b...", theta, concat_weights[:cq]).unsqueeze(1)  # (B, 1, *S)
        k = torch.einsum("bc...,c->b...", phi, concat_weights[cq:]).unsqueeze(1)  # (B, 1, *S)
        return _WindowAttention.apply(q, k, g, mode, radius)
    return _WindowAttention.apply(theta, phi, g, mode, radius)  # (B, Cv, *S)


def non_local_attention(
    theta: Tensor,
    phi: Tensor,
    g: Tensor,
    mode: str = "embedded_gaussian",
    window: int | None = None,
    concat_weights: Tensor | None = None,
) -> Tensor:
    """Normalised non-local aggregation ``y_i = (1/C) sum_j f(i, j) g_j``.

    Functional core of the non-local block, without embeddings, output
    projection or residual connection.

    Parameters
    ----------
    theta : Tensor
        Query embedding, shape ``(B, Cq, *S)`` with 1 to 3 spatial dims ``S``.
    phi : Tensor
        Key embedding, shape ``(B, Cq, *Sk)``. ``Sk`` may differ from ``S``
        (sub-sampled keys) for global attention; it must equal ``S`` when
        ``window`` is given.
    g : Tensor
        Values, shape ``(B, Cv, *Sk)``.
    mode : {"gaussian", "embedded_gaussian", "dot_product", "concatenation"}
        Pairwise function and normalisation, see Notes.
    window : int or None
        ``None`` for global attention over all key positions. An integer
        ``r >= 0`` restricts query ``i`` to the keys ``j`` with
        ``max_d |i_d - j_d| <= r`` that lie inside the grid.
    concat_weights : Tensor or None
        For ``mode="concatenation"`` only: the bias-free projection
        ``w_f`` of shape ``(2 * Cq,)``, acting on ``[theta_i, phi_j]``.

    Returns
    -------
    Tensor
        ``y`` of shape ``(B, Cv, *S)``.

    Raises
    ------
    ValueError
        Unknown mode, bad window, inconsistent shapes, missing or misshaped
        ``concat_weights``.

    Notes
    -----
    With ``s_ij = theta_i^T phi_j`` (no ``1/sqrt(d)`` scaling: the paper's
    equations use scale 1):

    * ``"gaussian"`` / ``"embedded_gaussian"``: ``f = exp(s_ij)``,
      ``C = sum_j f``, i.e. a softmax over ``j``. The two modes are the same
      computation here; they differ in what the caller passes (the raw input
      for ``"gaussian"``, learned 1x1 embeddings for ``"embedded_gaussian"``).
    * ``"dot_product"``: ``f = s_ij``, ``C = N`` (the number of key positions,
      or of valid neighbours with a window). Weights do not sum to 1 and may
      be negative.
    * ``"concatenation"``: ``f = relu(w_f^T [theta_i; phi_j])``, ``C = N`` as
      above.

    Global attention never forms the ``N x M`` matrix: the softmax modes use
    :func:`torch.nn.functional.scaled_dot_product_attention` with inputs
    zero-padded to a common width (so that its flash kernel applies), the
    dot product is evaluated as ``theta (phi^T g) / M``, and the
    concatenation mode splits ``w_f^T [theta_i; phi_j] = a_i + b_j`` and
    processes chunks of query rows in both forward and backward passes.
    Windowed attention loops over the ``(2r+1)^dim`` offsets; neighbours
    outside the grid are masked out of the sum and of ``C``.

    References
    ----------
    .. [1] X. Wang, R. Girshick, A. Gupta, K. He, "Non-local Neural Networks",
       CVPR 2018, arXiv:1711.07971.
    """
    mode = _check_mode(mode)
    window = _check_window(window)
    if not torch.jit.is_tracing():  # shapes are fixed (and were checked) in a trace
        _check_attention_inputs(theta, phi, g, mode, window, concat_weights)
    if window is None:
        return _global_attention(theta, phi, g, mode, concat_weights)
    return _window_attention(theta, phi, g, mode, window, concat_weights)


def _attention_row(
    theta: Tensor,
    phi: Tensor,
    position: tuple[int, ...],
    mode: str,
    window: int | None,
    concat_weights: Tensor | None,
) -> Tensor:
    """Normalised weights ``f(i, j) / C`` of one query ``i``: (B, *Sk)."""
    cq = theta.shape[1]
    key_shape = tuple(phi.shape[2:])
    query = theta[(slice(None), slice(None)) + position]  # (B, Cq)
    keys = phi.flatten(2)  # (B, Cq, M)
    if mode == "concatenation":
        assert concat_weights is not None
        scores = torch.relu(
            (query @ concat_weights[:cq])[:, None]
            + torch.einsum("bcm,c->bm", keys, concat_weights[cq:])
        )  # (B, M)
    else:
        scores = torch.einsum("bc,bcm->bm", query, keys)  # (B, M)
    if window is None:
        valid = torch.ones(keys.shape[2], dtype=torch.bool, device=keys.device)
    else:
        grids = torch.meshgrid(
            *[torch.arange(n, device=keys.device) for n in key_shape], indexing="ij"
        )
        dist = torch.stack([(grid - p).abs() for grid, p in zip(grids, position)]).amax(0)
        valid = (dist <= window).flatten()  # (M,)
    if mode in _SOFTMAX_MODES:
        weights = scores.masked_fill(~valid, float("-inf")).softmax(dim=1)
    else:
        weights = scores.masked_fill(~valid, 0.0) / valid.sum().to(scores.dtype)
    return weights.reshape(theta.shape[0], *key_shape)


# --------------------------------------------------------------------------
# nn.Module blocks
# --------------------------------------------------------------------------

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_BATCHNORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_MAXPOOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_POOL_KERNEL = {1: (2,), 2: (2, 2), 3: (1, 2, 2)}
_SHAPE_TEXT = {1: "(B, C, L)", 2: "(B, C, H, W)", 3: "(B, C, T, H, W)"}


class _NonLocalBlockNd(nn.Module):
    """Shared implementation of the 1-D, 2-D and 3-D non-local blocks.

    Subclasses only set ``_dim``; see :class:`NonLocalBlock2d` for the
    documentation of the parameters.
    """

    _dim: int = 0

    def __init__(
        self,
        in_channels: int,
        inter_channels: int | None = None,
        mode: str = "embedded_gaussian",
        sub_sample: bool = False,
        zero_init: bool = True,
        window: int | None = None,
    ) -> None:
        super().__init__()
        dim = self._dim
        if dim not in _CONV:
            raise TypeError("use NonLocalBlock1d, NonLocalBlock2d or NonLocalBlock3d")
        if not _is_positive_int(in_channels):
            raise ValueError(f"in_channels must be a positive integer, got {in_channels!r}")
        in_channels = int(in_channels)
        if inter_channels is None:
            inter_channels = max(1, in_channels // 2)
        if not _is_positive_int(inter_channels):
            raise ValueError(
                f"inter_channels must be None or a positive integer, got {inter_channels!r}"
            )
        inter_channels = int(inter_channels)
        mode = _check_mode(mode)
        window = _check_window(window)
        if sub_sample and window is not None:
            raise ValueError(
                "sub_sample=True cannot be combined with window: windowed attention is already "
                "linear in the number of positions and runs at full resolution; use "
                "sub_sample only with global attention (window=None)"
            )

        self.in_channels = in_channels
        self.inter_channels = inter_channels
        self.mode = mode
        self.sub_sample = bool(sub_sample)
        self.zero_init = bool(zero_init)
        self.window = window

        conv = _CONV[dim]
        self.g = conv(in_channels, inter_channels, kernel_size=1)
        if mode == "gaussian":
            # The paper's plain Gaussian compares the raw inputs: no theta/phi.
            self.theta = None
            self.phi = None
        else:
            self.theta = conv(in_channels, inter_channels, kernel_size=1)
            self.phi = conv(in_channels, inter_channels, kernel_size=1)
        if mode == "concatenation":
            # w_f of f = ReLU(w_f^T [theta_i; phi_j]), bias-free.
            bound = 1.0 / math.sqrt(2 * inter_channels)
            self.concat_weight = nn.Parameter(
                torch.empty(2 * inter_channels).uniform_(-bound, bound)
            )
        else:
            self.register_parameter("concat_weight", None)
        self.pool = _MAXPOOL[dim](kernel_size=_POOL_KERNEL[dim]) if sub_sample else None
        self.w_z = nn.Sequential(
            conv(inter_channels, in_channels, kernel_size=1),
            _BATCHNORM[dim](in_channels),
        )
        if zero_init:
            # gamma = 0 (beta is 0 already): W_z y == 0, so z == x at start.
            nn.init.zeros_(self.w_z[1].weight)
            nn.init.zeros_(self.w_z[1].bias)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, inter_channels={self.inter_channels}, "
            f"mode={self.mode!r}, sub_sample={self.sub_sample}, zero_init={self.zero_init}, "
            f"window={self.window}"
        )

    def _check_input(self, x: Tensor) -> None:
        if torch.jit.is_tracing():
            # Shape comparisons would be recorded as tensor -> bool casts; a
            # trace is specialised to the (already validated) example shape.
            return
        name = type(self).__name__
        dim = self._dim
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} expects a torch.Tensor, got {type(x).__name__}")
        if x.ndim != dim + 2:
            raise ValueError(
                f"{name} expects a {dim + 2}-D input {_SHAPE_TEXT[dim]}, got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"{name} was built for in_channels={self.in_channels}, got an input with "
                f"{x.shape[1]} channels (shape {tuple(x.shape)})"
            )
        if not x.is_floating_point():
            raise TypeError(f"{name} expects a floating-point input, got dtype {x.dtype}")
        if 0 in x.shape[2:]:
            raise ValueError(f"{name} got an input with an empty spatial axis: {tuple(x.shape)}")
        weight = self.g.weight
        if x.dtype != weight.dtype and not _autocast_enabled(x.device.type):
            raise TypeError(
                f"{name} has {weight.dtype} parameters and got a {x.dtype} input: convert one "
                f"(block.to({x.dtype}) or x.to({weight.dtype})), or run under torch.autocast"
            )
        if self.training and x.shape[0] * math.prod(x.shape[2:]) == 1:
            raise ValueError(
                f"{name} in training mode got a single position (shape {tuple(x.shape)}): its "
                "batch norm needs more than one value per channel; use block.eval() or a "
                "larger input"
            )
        if self.sub_sample:
            for size, k in zip(x.shape[2:], _POOL_KERNEL[dim]):
                if size < k:
                    raise ValueError(
                        f"sub_sample=True max-pools by {_POOL_KERNEL[dim]}; the input spatial "
                        f"shape {tuple(x.shape[2:])} is too small"
                    )

    def _embed(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        # x: (B, C, *S)
        g = self.g(x)  # (B, C', *S)
        if self.theta is None or self.phi is None:  # gaussian: raw input
            theta = x  # (B, C, *S)
            phi = x  # (B, C, *S)
        else:
            theta = self.theta(x)  # (B, C', *S)
            phi = self.phi(x)  # (B, C', *S)
        if self.pool is not None:
            phi = self.pool(phi)  # (B, Cq, *S/2)
            g = self.pool(g)  # (B, C', *S/2)
        return theta, phi, g

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block: ``z = W_z y + x``, same shape as ``x``."""
        self._check_input(x)
        theta, phi, g = self._embed(x)
        y = non_local_attention(
            theta, phi, g, mode=self.mode, window=self.window, concat_weights=self.concat_weight
        )  # (B, C', *S)
        return self.w_z(y) + x  # (B, C, *S)

    def attention_map(self, x: Tensor, position: int | Sequence[int]) -> Tensor:
        """Normalised weights ``f(x_i, x_j) / C(x)`` of one query position.

        Parameters
        ----------
        x : Tensor
            Input of the block, ``(B, C, *S)``.
        position : int or sequence of int
            Query position ``i`` on the input grid, one index per spatial
            dimension (an int is accepted for 1-D blocks).

        Returns
        -------
        Tensor
            Shape ``(B, *Sk)``, the key grid (``S``, or ``S`` max-pooled when
            ``sub_sample=True``). For the softmax modes each map sums to 1;
            for ``"dot_product"`` and ``"concatenation"`` the weights are
            ``f / N`` and sum to the mean of ``f``. With a window the
            weights outside the ``(2r+1)^dim`` neighbourhood are 0.
            Wrap the call in :func:`torch.no_grad` when only drawing it.
        """
        self._check_input(x)
        spatial = tuple(x.shape[2:])
        if isinstance(position, numbers.Integral) and not isinstance(position, bool):
            position = (position,)
        try:
            items = tuple(position)
        except TypeError:
            items = None
        if items is None or not all(
            isinstance(p, numbers.Integral) and not isinstance(p, bool) for p in items
        ):
            raise ValueError(f"position must be a sequence of {self._dim} ints, got {position!r}")
        pos = tuple(int(p) for p in items)
        if len(pos) != self._dim or any(not 0 <= p < n for p, n in zip(pos, spatial)):
            raise ValueError(
                f"position must be {self._dim} indices inside the input grid {spatial}, got {position!r}"
            )
        theta, phi, _ = self._embed(x)
        return _attention_row(theta, phi, pos, self.mode, self.window, self.concat_weight)


_BLOCK_DOC = """Non-local block for {dim}-D inputs {shape} (Wang et al., CVPR 2018).

    Computes ``z = W_z y + x`` with ``y_i = (1/C(x)) sum_j f(x_i, x_j) g(x_j)``
    over all positions ``j`` (or a ``(2r+1)^{dim}`` window around ``i``).
    The output has the shape of the input.

    Parameters
    ----------
    in_channels : int
        Number of channels ``C`` of the input.
    inter_channels : int or None
        Bottleneck width ``C'`` of ``theta``, ``phi`` and ``g``; default
        ``max(1, in_channels // 2)``.
    mode : {{"embedded_gaussian", "gaussian", "dot_product", "concatenation"}}
        Pairwise function ``f`` and normalisation ``C``, see Notes.
    sub_sample : bool
        Max-pool ``phi`` and ``g`` (the raw key input in ``"gaussian"`` mode)
        by {pool}, which divides the number of key positions by {factor}.
        Queries and the output stay at full resolution. Not allowed
        together with ``window``.
    zero_init : bool
        Start with the BatchNorm scale ``gamma`` (and shift ``beta``) of
        ``W_z`` at 0, so that a new block is exactly the identity.
    window : int or None
        ``None``: global attention. ``r``: each query only attends to the
        keys ``j`` with ``max_d |i_d - j_d| <= r`` inside the grid, like the
        search window of non-local means; cost and memory grow linearly with
        the number of positions. Requires ``sub_sample=False``.

    Attributes
    ----------
    theta, phi : Conv{dim}d or None
        1x1 query / key embeddings (``None`` in ``"gaussian"`` mode).
    g : Conv{dim}d
        1x1 value embedding.
    concat_weight : Parameter or None
        ``w_f`` of shape ``(2 C',)`` in ``"concatenation"`` mode.
    pool : MaxPool{dim}d or None
        Key sub-sampling.
    w_z : Sequential
        1x1 convolution ``C' -> C`` followed by BatchNorm{dim}d.

    Raises
    ------
    ValueError
        Bad ``mode``, ``in_channels``, ``inter_channels`` or ``window``, or
        ``sub_sample`` with ``window`` (at construction); input of the wrong
        number of dimensions or channels (in ``forward``).

    Notes
    -----
    **Normalisation.** With ``s_ij = theta_i^T phi_j`` and no ``1/sqrt(d)``
    scaling (scale 1, as in the paper's equations; the authors' Caffe2 code
    and mmcv scale by default):

    * ``"gaussian"``: ``f = exp(x_i^T x_j)`` on the raw input,
      ``C = sum_j f``: a softmax over ``j``; the weights of a query sum to 1.
    * ``"embedded_gaussian"``: as above on the 1x1 embeddings
      ``theta(x_i)``, ``phi(x_j)`` (self-attention).
    * ``"dot_product"``: ``f = s_ij``, ``C = N``, the number of key
      positions (valid neighbours with a window). Weights do not sum to 1
      and can be negative; this keeps the gradient scale independent of the
      image size without a softmax.
    * ``"concatenation"``: ``f = ReLU(w_f^T [theta_i; phi_j])``, ``C = N``.

    **Zero initialisation.** ``W_z`` ends in a BatchNorm layer whose
    ``gamma`` starts at 0, so ``W_z y = 0`` and ``z = x`` exactly for a new
    block whatever the weights of ``theta``, ``phi`` and ``g`` are; the
    block can be inserted into a pre-trained network without changing its
    output. Training is not stuck: the gradient with respect to ``gamma`` is
    non-zero, so ``gamma`` moves away from 0 at the first step and the other
    weights start to receive gradient after it. With ``zero_init=False`` the
    BatchNorm keeps its default ``gamma = 1``.

    **Memory.** No ``N x N`` affinity is stored, in the forward or the
    backward pass: the softmax modes use the flash path of
    :func:`torch.nn.functional.scaled_dot_product_attention`, the dot
    product is computed as ``theta (phi^T g) / N``, the concatenation mode
    splits ``w_f`` into a query part and a key part and processes chunks of
    query rows, and the windowed form loops over the window offsets. See
    :func:`non_local_attention`.

    References
    ----------
    .. [1] X. Wang, R. Girshick, A. Gupta, K. He, "Non-local Neural
       Networks", CVPR 2018, arXiv:1711.07971.
    .. [2] A. Buades, B. Coll, J.-M. Morel, "A non-local algorithm for image
       denoising", CVPR 2005.

    Examples
    --------
    >>> import torch
    >>> block = NonLocalBlock{dim}d(8)
    >>> x = torch.randn({example})
    >>> bool(torch.equal(block(x), x))  # zero-initialised: identity
    True
    """


class NonLocalBlock1d(_NonLocalBlockNd):
    __doc__ = _BLOCK_DOC.format(dim=1, shape="(B, C, L)", pool="2", factor="2", example="2, 8, 10")
    _dim = 1


class NonLocalBlock2d(_NonLocalBlockNd):
    __doc__ = _BLOCK_DOC.format(
        dim=2, shape="(B, C, H, W)", pool="2 x 2", factor="4", example="2, 8, 6, 5"
    )
    _dim = 2


class NonLocalBlock3d(_NonLocalBlockNd):
    __doc__ = _BLOCK_DOC.format(
        dim=3,
        shape="(B, C, T, H, W)",
        pool="(1, 2, 2) (time is not pooled)",
        factor="4",
        example="2, 8, 3, 6, 5",
    )
    _dim = 3
