"""Tests of the non-local neural blocks against naive N x N references."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import nlmeans.neural.block as block_mod  # noqa: E402
from nlmeans.neural.block import (  # noqa: E402
    MODES,
    NonLocalBlock1d,
    NonLocalBlock2d,
    NonLocalBlock3d,
    non_local_attention,
)

SOFTMAX = ("gaussian", "embedded_gaussian")
BLOCKS = {1: NonLocalBlock1d, 2: NonLocalBlock2d, 3: NonLocalBlock3d}
SHAPES = {1: (2, 4, 7), 2: (2, 4, 5, 6), 3: (2, 4, 3, 4, 5)}
WINDOWS = {1: 2, 2: 1, 3: 1}
ATOL = 1e-5


# --------------------------------------------------------------------------
# naive references: every pair (i, j) materialised
# --------------------------------------------------------------------------


def grid_positions(shape):
    grids = torch.meshgrid(*[torch.arange(n) for n in shape], indexing="ij")
    return torch.stack([g.flatten() for g in grids], dim=1)  # (N, dim)


def naive_attention(theta, phi, g, mode, window=None, w=None):
    """Literal y_i = sum_j f(i, j) g_j / C_i; returns y and the (B, N, M) weights."""
    spatial, key_spatial = theta.shape[2:], phi.shape[2:]
    q, k, v = theta.flatten(2), phi.flatten(2), g.flatten(2)  # (B, Cq, N), (B, Cq, M), (B, Cv, M)
    n, m = q.shape[2], k.shape[2]
    if mode == "concatenation":
        pair = torch.cat(
            [q[:, :, :, None].expand(-1, -1, n, m), k[:, :, None, :].expand(-1, -1, n, m)], dim=1
        )  # (B, 2Cq, N, M): [theta_i; phi_j]
        f = torch.relu(torch.einsum("c,bcnm->bnm", w, pair))
    else:
        s = torch.einsum("bcn,bcm->bnm", q, k)
        f = torch.exp(s) if mode in SOFTMAX else s
    if window is None:
        mask = torch.ones(n, m, dtype=torch.bool)
    else:
        dist = grid_positions(spatial)[:, None, :] - grid_positions(key_spatial)[None, :, :]
        mask = dist.abs().amax(-1) <= window
    f = f * mask
    norm = f.sum(-1, keepdim=True) if mode in SOFTMAX else mask.sum(-1, keepdim=True).to(f.dtype)
    weights = f / norm  # (B, N, M)
    y = torch.einsum("bnm,bcm->bcn", weights, v)
    return y.reshape(y.shape[0], y.shape[1], *spatial), weights


def naive_pool(t, dim):
    kernel = (1, 2, 2) if dim == 3 else (2,) * dim
    crop = tuple(slice(0, (n // kk) * kk) for n, kk in zip(t.shape[2:], kernel))
    t = t[(slice(None), slice(None)) + crop]
    shape = list(t.shape[:2])
    for n, kk in zip(t.shape[2:], kernel):
        shape += [n // kk, kk]
    return t.reshape(shape).amax(dim=tuple(3 + 2 * a for a in range(dim)))


def conv1x1(conv, t):
    weight = conv.weight.reshape(conv.out_channels, conv.in_channels)
    bias = conv.bias.reshape(1, -1, *[1] * (t.ndim - 2))
    return torch.einsum("oc,bc...->bo...", weight, t) + bias


def naive_block(block, x):
    dim = x.ndim - 2
    g = conv1x1(block.g, x)
    if block.mode == "gaussian":
        theta = phi = x
    else:
        theta, phi = conv1x1(block.theta, x), conv1x1(block.phi, x)
    if block.sub_sample:
        phi, g = naive_pool(phi, dim), naive_pool(g, dim)
    y, weights = naive_attention(theta, phi, g, block.mode, block.window, block.concat_weight)
    wy = conv1x1(block.w_z[0], y)
    bn = block.w_z[1]
    shape = (1, -1) + (1,) * dim
    if bn.training:
        axes = (0,) + tuple(range(2, wy.ndim))
        mean = wy.mean(dim=axes, keepdim=True)
        var = wy.var(dim=axes, unbiased=False, keepdim=True)
    else:
        mean, var = bn.running_mean.reshape(shape), bn.running_var.reshape(shape)
    out = (wy - mean) / torch.sqrt(var + bn.eps) * bn.weight.reshape(shape) + bn.bias.reshape(shape)
    return out + x, weights


def make_block(dim, mode, seed=0, train=False, **kwargs):
    torch.manual_seed(seed)
    block = BLOCKS[dim](SHAPES[dim][1], mode=mode, zero_init=False, **kwargs).double()
    bn = block.w_z[1]
    with torch.no_grad():
        bn.running_mean.normal_(0.0, 0.1)
        bn.running_var.uniform_(0.5, 1.5)
        bn.weight.normal_()
        bn.bias.normal_()
    return block.train(train)


def assert_close(a, b, atol=ATOL):
    assert a.shape == b.shape
    err = (a - b).abs().max().item() if a.numel() else 0.0
    assert err <= atol, f"max abs error {err:.3g} > {atol}"


def compare_forward_and_grads(block, x):
    x = x.clone().requires_grad_(True)
    params = [p for p in block.parameters()]
    probe = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(7))
    z = block(x)
    grads = torch.autograd.grad((z * probe).sum(), [x, *params])
    z_ref, _ = naive_block(block, x)
    grads_ref = torch.autograd.grad((z_ref * probe).sum(), [x, *params])
    assert_close(z, z_ref)
    names = ["input"] + [name for name, _ in block.named_parameters()]
    for name, got, want in zip(names, grads, grads_ref):
        assert got is not None, name
        assert_close(got, want)
        assert want.abs().max() > 0, f"reference gradient of {name} is zero: test is vacuous"


# --------------------------------------------------------------------------
# module vs naive: forward and gradients (input and every parameter)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", ["global", "sub_sample", "window"])
def test_block_matches_naive_reference(dim, mode, variant):
    kwargs = {"sub_sample": variant == "sub_sample"}
    if variant == "window":
        kwargs["window"] = WINDOWS[dim]
    block = make_block(dim, mode, **kwargs)
    x = torch.randn(SHAPES[dim], dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    compare_forward_and_grads(block, x)


@pytest.mark.parametrize("mode", MODES)
def test_block_matches_naive_reference_in_training_mode(mode):
    block = make_block(2, mode, train=True, sub_sample=True)
    x = torch.randn(SHAPES[2], dtype=torch.float64)
    compare_forward_and_grads(block, x)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("inter", [1, 6])
def test_block_inter_channels_narrow_and_wide(mode, inter):
    # gaussian mode with inter_channels > in_channels pads q/k (not v) for SDPA
    block = make_block(2, mode, inter_channels=inter)
    assert block.g.out_channels == inter
    x = torch.randn(SHAPES[2], dtype=torch.float64)
    compare_forward_and_grads(block, x)


def test_inter_channels_default_is_half_at_least_one():
    assert NonLocalBlock2d(8).inter_channels == 4
    assert NonLocalBlock2d(5).inter_channels == 2
    assert NonLocalBlock2d(1).inter_channels == 1
    assert NonLocalBlock2d(8, inter_channels=3).theta.out_channels == 3


def test_gaussian_mode_has_no_embeddings():
    block = NonLocalBlock2d(4, mode="gaussian")
    assert block.theta is None and block.phi is None and block.concat_weight is None
    assert NonLocalBlock2d(4, mode="concatenation").concat_weight.shape == (4,)


def test_window_covering_the_grid_equals_global_attention():
    x = torch.randn(SHAPES[2], dtype=torch.float64)
    for mode in MODES:
        local = make_block(2, mode, window=10)
        glob = make_block(2, mode)
        glob.load_state_dict(local.state_dict())
        assert_close(local(x), glob(x), atol=1e-10)


# --------------------------------------------------------------------------
# functional form
# --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "cq, cv, key_shape, window",
    [(3, 5, (4, 5), None), (5, 2, (2, 3), None), (3, 3, (4, 5), 1), (2, 4, (4, 5), 2)],
)
def test_functional_matches_naive(mode, cq, cv, key_shape, window):
    gen = torch.Generator().manual_seed(3)
    theta = torch.randn(2, cq, 4, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    phi = torch.randn(2, cq, *key_shape, dtype=torch.float64, generator=gen, requires_grad=True)
    g = torch.randn(2, cv, *key_shape, dtype=torch.float64, generator=gen, requires_grad=True)
    w = None
    inputs = [theta, phi, g]
    if mode == "concatenation":
        w = torch.randn(2 * cq, dtype=torch.float64, generator=gen, requires_grad=True)
        inputs.append(w)
    y = non_local_attention(theta, phi, g, mode=mode, window=window, concat_weights=w)
    y_ref, _ = naive_attention(theta, phi, g, mode, window, w)
    assert_close(y, y_ref)
    probe = torch.randn(y.shape, dtype=y.dtype, generator=gen)
    grads = torch.autograd.grad((y * probe).sum(), inputs)
    grads_ref = torch.autograd.grad((y_ref * probe).sum(), inputs)
    for got, want in zip(grads, grads_ref):
        assert_close(got, want)


def test_concatenation_chunking_forward_backward(monkeypatch):
    gen = torch.Generator().manual_seed(5)
    theta = torch.randn(2, 3, 7, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    phi = torch.randn(2, 3, 7, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    g = torch.randn(2, 4, 7, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(6, dtype=torch.float64, generator=gen, requires_grad=True)
    # 3 rows per chunk (35 queries: 11 full chunks and a partial one)
    monkeypatch.setattr(block_mod, "_CHUNK_BYTES", 3 * 2 * 35 * 8)
    assert block_mod._chunk_rows(2, 35, 8) == 3
    y = non_local_attention(theta, phi, g, mode="concatenation", concat_weights=w)
    y_ref, _ = naive_attention(theta, phi, g, "concatenation", None, w)
    assert_close(y, y_ref)
    probe = torch.randn(y.shape, dtype=y.dtype, generator=gen)
    grads = torch.autograd.grad((y * probe).sum(), [theta, phi, g, w])
    grads_ref = torch.autograd.grad((y_ref * probe).sum(), [theta, phi, g, w])
    for got, want in zip(grads, grads_ref):
        assert_close(got, want)
    # and torch's own finite-difference check of the custom backward
    a = torch.randn(2, 9, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(2, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    v = torch.randn(2, 6, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    monkeypatch.setattr(block_mod, "_CHUNK_BYTES", 2 * 2 * 6 * 8)
    assert torch.autograd.gradcheck(block_mod._ConcatenationAttention.apply, (a, b, v))


def _window_inputs(seed, batch, mode, spatial, values):
    """float64 q, k, v (requiring gradients) for _WindowAttention: (B, Cq, *S) twice,
    (B, values, *S); the concatenation mode's q and k have one channel."""
    gen = torch.Generator().manual_seed(seed)
    cq = 1 if mode == "concatenation" else 2
    return [
        torch.randn(batch, c, *spatial, dtype=torch.float64, generator=gen, requires_grad=True)
        for c in (cq, cq, values)
    ]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("spatial", [(6,), (4, 5), (2, 2, 3)])
def test_window_backward_gradcheck(mode, spatial):
    """Finite-difference check of the hand-written windowed backward."""
    q, k, v = _window_inputs(11, 2, mode, spatial, 3)
    fn = block_mod._WindowAttention.apply
    assert torch.autograd.gradcheck(lambda a, b, c: fn(a, b, c, mode, 1), (q, k, v))
    # gradients requested for a subset of the inputs only
    y = fn(q.detach(), k, v.detach(), mode, 1)
    (gk,) = torch.autograd.grad(y.sum(), [k])
    assert gk.shape == k.shape


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("spatial", [(5,), (3, 4)])
def test_custom_backwards_have_exact_second_derivatives(mode, spatial):
    """create_graph=True (gradient penalties, Hessian-vector products) goes
    through a differentiable backward: torch's finite-difference check of it."""
    q, k, v = _window_inputs(12, 1, mode, spatial, 2)
    fn = block_mod._WindowAttention.apply
    assert torch.autograd.gradgradcheck(lambda a, b, c: fn(a, b, c, mode, 1), (q, k, v))
    if mode == "concatenation":
        gen = torch.Generator().manual_seed(13)
        a = torch.randn(2, 5, dtype=torch.float64, generator=gen, requires_grad=True)
        b = torch.randn(2, 4, dtype=torch.float64, generator=gen, requires_grad=True)
        w = torch.randn(2, 4, 3, dtype=torch.float64, generator=gen, requires_grad=True)
        assert torch.autograd.gradgradcheck(block_mod._ConcatenationAttention.apply, (a, b, w))


@pytest.mark.parametrize("mode", ["dot_product", "concatenation", "embedded_gaussian"])
@pytest.mark.parametrize("window", [None, 1])
def test_gradient_penalty_matches_the_naive_block(mode, window):
    """The second derivative a gradient penalty needs, against autograd through
    the naive N x N reference (which has no custom backward)."""
    if mode in SOFTMAX and window is None:
        pytest.skip("global softmax: PyTorch's flash kernel (see the next test)")
    torch.manual_seed(3)
    block = NonLocalBlock2d(3, mode=mode, window=window, zero_init=False).double().eval()
    x = torch.randn(1, 3, 4, 3, dtype=torch.float64)

    def penalty(attention):
        xx = x.clone().requires_grad_()
        theta, phi, g = block._embed(xx)
        y = attention(theta, phi, g)
        z = block.w_z(y) + xx
        (gx,) = torch.autograd.grad(z.pow(2).sum(), xx, create_graph=True)
        return torch.autograd.grad(gx.pow(2).sum(), block.theta.weight)[0]

    got = penalty(
        lambda t, p, g: non_local_attention(
            t, p, g, mode=mode, window=window, concat_weights=block.concat_weight
        )
    )
    want = penalty(lambda t, p, g: naive_attention(t, p, g, mode, window, block.concat_weight)[0])
    torch.testing.assert_close(got, want)


def test_global_softmax_second_derivatives_with_the_math_kernel():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    block = NonLocalBlock2d(3, zero_init=False).double().eval()
    x = torch.randn(1, 3, 4, 3, dtype=torch.float64, requires_grad=True)
    with sdpa_kernel(SDPBackend.MATH):  # what the README says to do
        assert torch.autograd.gradgradcheck(lambda t: block(t).pow(2).sum(), (x,))


def test_dot_product_does_not_overflow_in_float16():
    torch.manual_seed(0)
    block = NonLocalBlock2d(64, mode="dot_product", zero_init=False).eval()
    x = torch.randn(1, 64, 64, 64) * 3
    want = block(x)
    with torch.autocast("cpu", dtype=torch.float16):
        got = block(x)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.float(), want, atol=0.1, rtol=0.05)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("window", [None, 2])
def test_no_quadratic_tensor_is_saved_for_backward(mode, window):
    """Autograd must not keep an N x N (or K x C x N) tensor alive."""
    n_side, c = 24, 4
    n = n_side * n_side
    theta = torch.randn(1, c, n_side, n_side, requires_grad=True)
    phi = torch.randn(1, c, n_side, n_side, requires_grad=True)
    g = torch.randn(1, c, n_side, n_side, requires_grad=True)
    w = torch.randn(2 * c, requires_grad=True) if mode == "concatenation" else None
    sizes = []

    def pack(t):
        sizes.append(t.untyped_storage().nbytes() // t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = non_local_attention(theta, phi, g, mode=mode, window=window, concat_weights=w)
    y.sum().backward()
    assert sizes, "nothing saved: hook not exercised"
    k = 1 if window is None else (2 * window + 1) ** 2
    # largest saved storage: a padded feature map or the (K, N) weights
    assert max(sizes) <= 2 * max(c * (n_side + 8) ** 2, k * n), max(sizes)
    assert max(sizes) < n * n / 8


# --------------------------------------------------------------------------
# zero initialisation
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("mode", MODES)
def test_new_block_is_identity(dim, mode):
    block = BLOCKS[dim](SHAPES[dim][1], mode=mode)
    x = torch.randn(SHAPES[dim])
    assert torch.equal(block(x), x)  # training mode (batch statistics)
    block.eval()
    assert torch.equal(block(x), x)
    assert torch.count_nonzero(block.w_z[1].weight) == 0


def test_zero_init_still_trains():
    block = NonLocalBlock2d(4, mode="embedded_gaussian")
    x = torch.randn(2, 4, 5, 6)
    loss = (block(x) * torch.randn(2, 4, 5, 6)).sum()
    loss.backward()
    assert block.w_z[1].weight.grad.abs().sum() > 0  # gamma leaves 0 at the first step
    assert block.theta.weight.grad.abs().sum() == 0  # blocked until gamma != 0
    assert NonLocalBlock2d(4, zero_init=False).w_z[1].weight.eq(1).all()


# --------------------------------------------------------------------------
# attention maps
# --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", ["global", "sub_sample", "window"])
def test_attention_map_matches_naive_row(mode, variant):
    kwargs = {"sub_sample": variant == "sub_sample"}
    if variant == "window":
        kwargs["window"] = 1
    block = make_block(2, mode, **kwargs)
    x = torch.randn(SHAPES[2], dtype=torch.float64)
    _, weights = naive_block(block, x)  # (B, N, M)
    width = x.shape[3]
    for pos in [(0, 0), (2, 3), (4, 5)]:
        amap = block.attention_map(x, pos)
        key_shape = (2, 3) if variant == "sub_sample" else (5, 6)
        assert amap.shape == (2, *key_shape)
        row = weights[:, pos[0] * width + pos[1]]
        assert_close(amap.flatten(1), row)
        if mode in SOFTMAX:
            assert_close(amap.sum(dim=(1, 2)), torch.ones(2, dtype=torch.float64), atol=1e-12)
        if variant == "window":
            outside = torch.ones(5, 6, dtype=torch.bool)
            outside[max(0, pos[0] - 1) : pos[0] + 2, max(0, pos[1] - 1) : pos[1] + 2] = False
            assert amap[:, outside].abs().max() == 0


def test_attention_map_1d_and_3d():
    block1 = make_block(1, "embedded_gaussian")
    x1 = torch.randn(SHAPES[1], dtype=torch.float64)
    m1 = block1.attention_map(x1, 3)
    assert m1.shape == (2, 7)
    assert_close(m1, naive_block(block1, x1)[1][:, 3])
    block3 = make_block(3, "dot_product", sub_sample=True)
    x3 = torch.randn(SHAPES[3], dtype=torch.float64)
    m3 = block3.attention_map(x3, (1, 2, 3))
    assert m3.shape == (2, 3, 2, 2)
    assert_close(m3.flatten(1), naive_block(block3, x3)[1][:, 1 * 20 + 2 * 5 + 3])


# --------------------------------------------------------------------------
# tracing and export
# --------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("window", [None, 1])
def test_jit_trace_2d(mode, window):
    block = make_block(2, mode, window=window)
    x = torch.randn(SHAPES[2], dtype=torch.float64)
    traced = torch.jit.trace(block, x)
    x2 = torch.randn(SHAPES[2], dtype=torch.float64)
    assert_close(traced(x2), block(x2), atol=1e-12)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("dim", [1, 3])
def test_jit_trace_1d_3d(dim):
    block = make_block(dim, "gaussian", sub_sample=True)
    x = torch.randn(SHAPES[dim], dtype=torch.float64)
    traced = torch.jit.trace(block, x)
    x2 = torch.randn(SHAPES[dim], dtype=torch.float64)
    assert_close(traced(x2), block(x2), atol=1e-12)


@pytest.mark.parametrize(
    "mode, kwargs",
    [
        ("embedded_gaussian", {}),
        ("gaussian", {"sub_sample": True}),
        ("dot_product", {"window": 1}),
        ("concatenation", {}),
    ],
)
def test_torch_export_2d(mode, kwargs):
    block = make_block(2, mode, **kwargs)
    x = torch.randn(SHAPES[2], dtype=torch.float64)
    exported = torch.export.export(block, (x,))
    x2 = torch.randn(SHAPES[2], dtype=torch.float64)
    assert_close(exported.module()(x2), block(x2), atol=1e-12)


# --------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------


def test_constructor_validation():
    with pytest.raises(ValueError, match="mode"):
        NonLocalBlock2d(4, mode="softmax")
    with pytest.raises(ValueError, match="in_channels"):
        NonLocalBlock2d(0)
    with pytest.raises(ValueError, match="inter_channels"):
        NonLocalBlock2d(4, inter_channels=0)
    with pytest.raises(ValueError, match="window"):
        NonLocalBlock2d(4, window=-1)
    with pytest.raises(ValueError, match="window"):
        NonLocalBlock2d(4, window=1.5)
    with pytest.raises(ValueError, match="sub_sample"):
        NonLocalBlock2d(4, sub_sample=True, window=2)
    with pytest.raises(TypeError):
        block_mod._NonLocalBlockNd(4)


def test_forward_validation():
    block = NonLocalBlock2d(4)
    with pytest.raises(ValueError, match="4-D input"):
        block(torch.randn(4, 5, 6))
    with pytest.raises(ValueError, match="in_channels=4"):
        block(torch.randn(1, 3, 5, 6))
    with pytest.raises(ValueError, match="5-D input"):
        NonLocalBlock3d(4)(torch.randn(1, 4, 5, 6))
    with pytest.raises(ValueError, match="too small"):
        NonLocalBlock2d(4, sub_sample=True)(torch.randn(2, 4, 1, 6))
    with pytest.raises(ValueError, match="position"):
        block.attention_map(torch.randn(1, 4, 5, 6), (5, 0))
    with pytest.raises(ValueError, match="position"):
        block.attention_map(torch.randn(1, 4, 5, 6), (1,))
    with pytest.raises(ValueError, match="position"):
        block.attention_map(torch.randn(1, 4, 5, 6), (1.7, 2))
    with pytest.raises(TypeError, match="floating-point"):
        block(torch.ones(1, 4, 5, 6, dtype=torch.int64))
    with pytest.raises(ValueError, match="empty spatial axis"):
        block(torch.randn(1, 4, 0, 6))
    with pytest.raises(TypeError, match="float32 parameters.*float64 input"):
        block(torch.randn(1, 4, 5, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match="batch norm.*eval"):
        block.train()(torch.randn(1, 4, 1, 1))
    assert block.eval()(torch.randn(1, 4, 1, 1)).shape == (1, 4, 1, 1)
    # NumPy integers are integers
    import numpy as np

    assert NonLocalBlock2d(np.int64(4), inter_channels=np.int64(2), window=np.int64(1)).window == 1
    assert block.attention_map(torch.randn(1, 4, 5, 6), (np.int64(1), 2)).shape[-2:] == (5, 6)


def test_functional_validation():
    t = torch.randn(1, 3, 4, 5)
    with pytest.raises(ValueError, match="mode"):
        non_local_attention(t, t, t, mode="bad")
    with pytest.raises(ValueError, match="same number of channels"):
        non_local_attention(t, torch.randn(1, 2, 4, 5), t)
    with pytest.raises(ValueError, match="key grid"):
        non_local_attention(t, t, torch.randn(1, 3, 2, 5))
    with pytest.raises(ValueError, match="query grid"):
        non_local_attention(t, torch.randn(1, 3, 2, 2), torch.randn(1, 3, 2, 2), window=1)
    with pytest.raises(ValueError, match="concat_weights"):
        non_local_attention(t, t, t, mode="concatenation")
    with pytest.raises(ValueError, match="concat_weights"):
        non_local_attention(t, t, t, mode="concatenation", concat_weights=torch.randn(3))
    with pytest.raises(ValueError, match="concat_weights"):
        non_local_attention(t, t, t, mode="dot_product", concat_weights=torch.randn(6))
    with pytest.raises(ValueError, match="spatial"):
        non_local_attention(torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4))
    with pytest.raises(ValueError, match="batch"):
        non_local_attention(t, torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5))
    with pytest.raises(TypeError, match="floating"):
        non_local_attention(t.long(), t.long(), t.long())
