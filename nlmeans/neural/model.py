"""The learned denoiser: a residual CNN with non-local blocks in the middle.

Layout (``DenoiserConfig`` defaults: 48 channels, depth 12, 1 block, window 3)::

    noisy (B,1,H,W)
      -> pixel-unshuffle by ``downscale`` (2): (B,4,H/2,W/2)
      -> 3x3 conv to ``channels`` + ReLU                          (head)
      -> 5 residual units  u + conv(relu(conv(u)))                (body, depth-2 convs)
         with ``blocks`` NonLocalBlock2d spread evenly between the units
      -> 3x3 conv back to 4 channels, pixel-shuffle                (tail)
      = predicted noise n;   output = noisy - n                    (residual learning)

Working at half resolution (as FFDNet does) makes every 3x3 layer four times
cheaper and doubles its reach (the default network sees +-26 pixels, 32 with
the block); the non-local block adds matching of similar features within a
``window`` of (2r+1)^2 positions at that resolution: cost linear in the image
size and a finite receptive field, so tiled inference is exact. Residual
units (second conv scaled by 0.1 at initialisation) make the 12-layer network
train from scratch as fast as a shallow one: a plain conv-ReLU stack of the
same depth (``residual=False``) barely moves in its first hundred steps.

The configuration is a frozen dataclass that checkpoints carry as a plain
dict, so every checkpoint rebuilds its own network
(:meth:`NonLocalDenoiser.from_config_dict`). All 3x3 convolutions are
initialised from one seed drawn from the global RNG, so networks that differ
only in their blocks start from identical convolutions (fair ablations).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BLOCK_MODES", "DenoiserConfig", "NonLocalDenoiser", "count_parameters"]

#: Modes of :class:`~nlmeans.neural.block.NonLocalBlock2d`; ``"none"`` builds
#: the same network with no non-local block (for ablations).
BLOCK_MODES = ("embedded_gaussian", "gaussian", "dot_product", "concatenation", "none")
NORMS = ("none", "batch")


@dataclass(frozen=True)
class DenoiserConfig:
    """Architecture of :class:`NonLocalDenoiser` (stored inside checkpoints).

    Attributes:
        in_channels: image channels the network sees (1: gray, 3: RGB colour
            denoised jointly; :func:`nlmeans.neural.denoise` runs a gray model
            on colour images one channel at a time).
        channels: feature channels of every hidden layer.
        depth: number of 3x3 convolutions (head + body + tail), at least 3.
        downscale: pixel-unshuffle factor before the convolutions (1 = full
            resolution, 2 = half resolution).
        blocks: number of NonLocalBlock2d layers, spread evenly through the body.
        mode: block mode, one of :data:`BLOCK_MODES`; ``"none"`` (or
            ``blocks=0``) gives the plain CNN.
        window: radius r of the block's attention neighbourhood ((2r+1)^2
            positions, at the reduced resolution); ``None`` = attention over
            the whole (tile of the) image, which makes tiled inference only
            approximate.
        inter_channels: bottleneck width of the blocks (``None``: channels // 2).
        sub_sample: max-pool phi/g inside the blocks (paper option).
        norm: ``"none"`` or ``"batch"`` (BatchNorm after each body conv).
        residual: build the body from residual units ``x + conv(relu(conv(x)))``
            (True, trains much faster from scratch) or from plain conv-ReLU
            layers as in DnCNN (False).
        noise_level_input: if True the network is non-blind (FFDNet style): it
            receives a noise-level map, the standard deviation of the noise at
            every pixel of every channel on the [0, 1] scale, as
            ``in_channels`` extra input channels (averaged to the reduced
            resolution). The default (False) is one blind model for the whole
            training sigma range.
        frames: number of consecutive frames the network takes (odd). With
            ``frames > 1`` it is a spacetime denoiser: the ``frames`` frames
            come stacked on the channel axis, ``(B, frames * in_channels, H,
            W)``, and it returns the middle one denoised. Every frame goes
            through the same head and first half of the body (shared
            weights); a :class:`~nlmeans.neural.block.NonLocalBlock3d` then
            lets the middle frame's features attend to all frames within
            ``temporal_window`` (t, y, x), and the rest of the network runs on
            the middle frame only.
        temporal_window: radius of that block's (t, y, x) window, at the
            reduced resolution (used only when ``frames > 1``).
        early_fusion: spacetime networks only: the middle frame's head also
            sees the pixels of the other frames (extra input channels, zero
            for the other frames' own heads), so that the convolutions can
            average across frames before the temporal block matches them.
    """

    in_channels: int = 1
    channels: int = 48
    depth: int = 12
    downscale: int = 2
    blocks: int = 1
    mode: str = "embedded_gaussian"
    window: int | None = 3
    inter_channels: int | None = None
    sub_sample: bool = False
    norm: str = "none"
    residual: bool = True
    noise_level_input: bool = False
    frames: int = 1
    temporal_window: int = 2
    early_fusion: bool = False

    def __post_init__(self) -> None:
        def _int(name: str, minimum: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(
                    f"DenoiserConfig.{name} must be an integer >= {minimum}, got {value!r}"
                )

        _int("in_channels", 1)
        _int("channels", 1)
        _int("depth", 3)
        _int("downscale", 1)
        _int("blocks", 0)
        _int("frames", 1)
        _int("temporal_window", 0)
        if self.frames % 2 == 0:
            raise ValueError(
                f"DenoiserConfig.frames must be odd (a middle frame and as many on each side), "
                f"got {self.frames}"
            )
        if self.mode not in BLOCK_MODES:
            raise ValueError(f"DenoiserConfig.mode must be one of {BLOCK_MODES}, got {self.mode!r}")
        if self.window is not None:
            _int("window", 0)
        if self.inter_channels is not None:
            _int("inter_channels", 1)
        if self.norm not in NORMS:
            raise ValueError(f"DenoiserConfig.norm must be one of {NORMS}, got {self.norm!r}")
        if self.early_fusion and self.frames == 1:
            raise ValueError("DenoiserConfig.early_fusion needs frames > 1")
        for name in ("sub_sample", "residual", "noise_level_input", "early_fusion"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"DenoiserConfig.{name} must be a bool, got {getattr(self, name)!r}"
                )
        if self.sub_sample and self.window is not None and self.num_blocks:
            raise ValueError("DenoiserConfig: sub_sample=True needs window=None (global attention)")

    # -- (de)serialisation -------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain ``dict`` of builtins (safe for ``torch.load(weights_only=True)`` and JSON)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DenoiserConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error (``ValueError``)."""
        if not isinstance(data, Mapping):
            raise ValueError(f"denoiser config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown denoiser config keys: {sorted(unknown)}")
        return cls(**dict(data))

    # -- derived properties ------------------------------------------------
    @property
    def num_blocks(self) -> int:
        """Number of non-local blocks actually built (0 for mode ``"none"``)."""
        return 0 if self.mode == "none" else self.blocks

    @property
    def blind(self) -> bool:
        """True when the network does not take sigma as an input."""
        return not self.noise_level_input

    @property
    def noise_channels(self) -> int:
        """Noise-level map channels the network takes (0 when blind)."""
        return self.in_channels if self.noise_level_input else 0

    @property
    def spacetime(self) -> bool:
        """True when the network takes several frames and returns the middle one."""
        return self.frames > 1

    @property
    def alignment(self) -> int:
        """Input sizes (and tile offsets) must be multiples of this."""
        pool = 2 if (self.sub_sample and self.num_blocks) else 1
        return self.downscale * pool

    @property
    def receptive_radius(self) -> int | None:
        """Upper bound, in input pixels, of how far an output pixel looks.

        ``None`` when a block attends to the whole image (``window=None``).
        """
        if self.num_blocks and self.window is None:
            return None
        radius = self.depth  # one reduced-resolution pixel per 3x3 conv
        if self.num_blocks:
            radius += self.num_blocks * self.window
        if self.spacetime:
            radius += self.temporal_window
        return (radius + 1) * self.downscale


def _block_positions(body_layers: int, blocks: int) -> list[int]:
    """Indices i (0..body_layers) such that a block follows the i-th body conv."""
    return [round((k + 1) * body_layers / (blocks + 1)) for k in range(blocks)]


RESIDUAL_INIT_SCALE = 0.1


def _plain_layer(c: int, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c, c, 3, padding=1, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class _ResidualUnit(nn.Module):
    """``x + conv(relu(conv(x)))`` (with BatchNorm after each conv if asked)."""

    def __init__(self, c: int, batch_norm: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(c, c, 3, padding=1, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(c))
        layers += [nn.ReLU(inplace=True), nn.Conv2d(c, c, 3, padding=1, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(c))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


class NonLocalDenoiser(nn.Module):
    """Residual denoiser: ``forward(noisy) = noisy - predicted_noise``.

    Accepts ``(B, in_channels, H, W)`` tensors of any size: inputs whose size is
    not a multiple of :attr:`DenoiserConfig.alignment` are padded (replicate,
    bottom/right) and the result cropped back. A spacetime network
    (``config.frames > 1``) takes ``(B, frames * in_channels, H, W)``, the
    frames in time order, and returns the middle frame denoised.
    """

    def __init__(self, config: DenoiserConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        if config is None:
            config = DenoiserConfig(**overrides)
        elif overrides:
            config = dataclasses.replace(config, **overrides)
        self.config = config
        # One draw from the global RNG seeds all convolution weights, so that
        # networks differing only in their blocks start from the same convs.
        init_seed = int(torch.randint(0, 2**62, (1,)).item())
        c = config.channels
        s = config.downscale
        io_channels = config.in_channels * s * s
        batch_norm = config.norm == "batch"

        fused = io_channels * (config.frames - 1) if config.early_fusion else 0
        self.head = nn.Conv2d(io_channels + config.noise_channels + fused, c, 3, padding=1)
        # Body: (depth - 2) 3x3 convolutions grouped in units -- residual
        # units of two convolutions (plus one plain layer first when the count
        # is odd) or plain conv-ReLU layers -- with the blocks between units.
        body_convs = config.depth - 2
        units: list[nn.Module] = []
        if config.residual:
            if body_convs % 2:
                units.append(_plain_layer(c, batch_norm))
            units += [_ResidualUnit(c, batch_norm) for _ in range(body_convs // 2)]
        else:
            units += [_plain_layer(c, batch_norm) for _ in range(body_convs)]
        positions = _block_positions(len(units), config.num_blocks)
        layers: list[nn.Module] = []
        # Spacetime networks fuse the frames right after the first 2-D block
        # (or half-way through the body without one): the frames are matched
        # on features that already saw some context, and the second half of
        # the body has room to use what the other frames add.
        self._fuse_at = positions[0] + 1 if positions else len(units) // 2
        for i in range(len(units) + 1):
            for _ in range(positions.count(i)):
                layers.append(self._make_block(config))
            if i < len(units):
                layers.append(units[i])
        self.body = nn.Sequential(*layers)
        self.tail = nn.Conv2d(c, io_channels, 3, padding=1)
        self.temporal = self._make_temporal_block(config) if config.spacetime else None
        self._init_weights(torch.Generator().manual_seed(init_seed))

    @staticmethod
    def _make_block(config: DenoiserConfig) -> nn.Module:
        from .block import NonLocalBlock2d

        return NonLocalBlock2d(
            config.channels,
            inter_channels=config.inter_channels,
            mode=config.mode,
            sub_sample=config.sub_sample,
            zero_init=True,
            window=config.window,
        )

    @staticmethod
    def _make_temporal_block(config: DenoiserConfig) -> nn.Module:
        from .block import NonLocalBlock3d

        # Zero-initialised (the paper's recipe): until it learns, the
        # spacetime network computes exactly what its per-frame layers do on
        # the middle frame, so it can start from a trained per-frame network.
        return NonLocalBlock3d(
            config.channels,
            inter_channels=config.inter_channels,
            mode="embedded_gaussian" if config.mode == "none" else config.mode,
            zero_init=True,
            window=config.temporal_window,
        )

    def _init_weights(self, generator: torch.Generator) -> None:
        for module in [self.head, *self.body.modules()]:
            if isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=generator)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        # Residual units start close to the identity, so the deep network
        # trains like a shallow one at first and grows into its depth.
        with torch.no_grad():
            for unit in self.body:
                if isinstance(unit, _ResidualUnit):
                    last = unit.layers[-1]
                    if isinstance(last, nn.BatchNorm2d):
                        last.weight.fill_(RESIDUAL_INIT_SCALE)
                    else:
                        last.weight.mul_(RESIDUAL_INIT_SCALE)
        # Small output layer: the untrained network predicts almost no noise.
        nn.init.normal_(
            self.tail.weight, std=1e-3 / math.sqrt(self.tail.weight[0].numel()), generator=generator
        )
        nn.init.zeros_(self.tail.bias)

    # ------------------------------------------------------------------
    @property
    def blind(self) -> bool:
        return self.config.blind

    def num_parameters(self) -> int:
        return count_parameters(self)

    def predict_noise(
        self, x: torch.Tensor, sigma: torch.Tensor | float | None = None
    ) -> torch.Tensor:
        """The residual the network predicts: same shape as ``x`` (as the
        middle frame, ``(B, in_channels, H, W)``, for a spacetime network)."""
        cfg = self.config
        c_in = cfg.in_channels * cfg.frames
        if x.ndim != 4 or x.shape[1] != c_in:
            what = f"{cfg.frames} frames of {cfg.in_channels}" if cfg.spacetime else ""
            raise ValueError(
                f"expected a (B, {c_in}, H, W) tensor{' (' + what + ' channel(s))' if what else ''}"
                f", got shape {tuple(x.shape)}"
            )
        b = x.shape[0]
        h, w = x.shape[-2:]
        a = cfg.alignment
        pad_h, pad_w = (-h) % a, (-w) % a
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        if cfg.spacetime:
            # (B, T*C, H, W) -> (B*T, C, H, W): every frame through the same layers
            x = x.reshape(b * cfg.frames, cfg.in_channels, *x.shape[-2:])
            sigma = _per_frame(sigma, b, cfg.frames)
        s = cfg.downscale
        y = F.pixel_unshuffle(x, s) if s > 1 else x
        if cfg.noise_level_input:
            pixels = y
            y = torch.cat([y, self._noise_input(sigma, x, (h, w), y.shape[-2:])], dim=1)
        else:
            pixels = y
        if cfg.spacetime and cfg.early_fusion:
            y = torch.cat([y, self._other_frames(pixels, b)], dim=1)
        y = torch.relu(self.head(y))
        if cfg.spacetime:
            assert self.temporal is not None
            y = self.body[: self._fuse_at](y)  # (B*T, c, h', w')
            y = y.reshape(b, cfg.frames, *y.shape[1:]).transpose(1, 2)  # (B, c, T, h', w')
            y = self.temporal(y)[:, :, cfg.frames // 2]  # (B, c, h', w'): the middle frame
            y = self.body[self._fuse_at :](y)
        else:
            y = self.body(y)
        y = self.tail(y)
        if s > 1:
            y = F.pixel_shuffle(y, s)
        return y[..., :h, :w]

    def _other_frames(self, pixels: torch.Tensor, batch: int) -> torch.Tensor:
        """Early fusion: the other frames' pixels as extra head inputs of each
        clip's middle frame, zeros for every other frame.

        ``pixels``: ``(B*T, P, h, w)`` -> ``(B*T, (T-1)*P, h, w)``.
        """
        t = self.config.frames
        mid = t // 2
        clips = pixels.reshape(batch, t, *pixels.shape[1:])  # (B, T, P, h, w)
        others = torch.cat([clips[:, :mid], clips[:, mid + 1 :]], dim=1).flatten(1, 2)
        extra = pixels.new_zeros(batch, t, *others.shape[1:])
        extra[:, mid] = others
        return extra.flatten(0, 1)

    def middle_frame(self, x: torch.Tensor) -> torch.Tensor:
        """The frame a spacetime network denoises (``x`` itself otherwise)."""
        cfg = self.config
        if not cfg.spacetime:
            return x
        mid = cfg.frames // 2
        return x[:, mid * cfg.in_channels : (mid + 1) * cfg.in_channels]

    def _noise_input(self, sigma, x: torch.Tensor, image_size, size) -> torch.Tensor:
        """The noise-level map at the reduced resolution, ``(B, C, h, w)``.

        ``x`` is the (padded) input of spatial size ``image_size`` before
        padding; a full-resolution map is padded the same way and averaged
        over each ``downscale`` x ``downscale`` cell, as FFDNet feeds its map
        next to the pixel-unshuffled image.
        """
        if sigma is None:
            raise ValueError("this denoiser is not blind: sigma (a noise level or map) is required")
        b, c = x.shape[:2]
        sig = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        if sig.ndim <= 2:
            # a scalar, one value per batch item, or (B, C): constant maps
            try:
                sig = torch.broadcast_to(sig.reshape(sig.shape + (1,) * (2 - sig.ndim)), (b, c))
            except RuntimeError:
                raise ValueError(
                    f"sigma must be a scalar, one value per batch item ({b}), (B, {c}) or a "
                    f"(B, {c} or 1, H, W) map; got shape {tuple(sig.shape)}"
                ) from None
            return sig[..., None, None].expand(b, c, *size)
        if sig.ndim != 4 or sig.shape[0] not in (1, b) or sig.shape[1] not in (1, c):
            raise ValueError(
                f"a noise-level map must have shape (B, {c} or 1, H, W); got {tuple(sig.shape)}"
            )
        if tuple(sig.shape[-2:]) != tuple(image_size):
            raise ValueError(
                f"the noise-level map is {tuple(sig.shape[-2:])}, the image "
                f"{tuple(image_size)} (spatial sizes must agree)"
            )
        ph, pw = x.shape[-2] - image_size[0], x.shape[-1] - image_size[1]
        if ph or pw:
            sig = F.pad(sig, (0, pw, 0, ph), mode="replicate")
        s = self.config.downscale
        if s > 1:
            sig = F.avg_pool2d(sig, s)
        return sig.expand(b, c, *size)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        """Denoised ``x``: ``x - predict_noise(x)``.

        ``sigma`` is used only by non-blind models: the noise standard
        deviation on the [0, 1] scale, as a scalar, one value per batch item,
        ``(B, C)`` (per channel), or a per-pixel map ``(B, C or 1, H, W)``.
        """
        return self.middle_frame(x) - self.predict_noise(x, sigma)

    @classmethod
    def from_config_dict(cls, data: Mapping[str, Any]) -> "NonLocalDenoiser":
        return cls(DenoiserConfig.from_dict(data))

    def extra_repr(self) -> str:
        return f"params={self.num_parameters()}"


def _per_frame(sigma, batch: int, frames: int):
    """A noise level given per clip, repeated for each of its ``frames`` frames.

    A scalar stays a scalar; one value per clip, ``(B, C)`` levels or a
    ``(B, C, H, W)`` map (the middle frame's) are repeated along the batch
    axis, which now holds ``B * frames`` frames.
    """
    if sigma is None or isinstance(sigma, (int, float)):
        return sigma
    sig = torch.as_tensor(sigma)
    if sig.ndim == 0 or sig.shape[0] != batch:
        return sig  # broadcast as it is (or reported as misshaped by _noise_input)
    return sig.repeat_interleave(frames, dim=0)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
