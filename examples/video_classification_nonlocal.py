"""Insert a spacetime non-local block into a small 3-D ResNet for video classification.

The recipe of Wang et al. (CVPR 2018, Section 4): take a trained C2D/I3D-style
network, insert :class:`nlmeans.neural.NonLocalBlock3d` after a residual
block, with its output projection's BatchNorm scale at zero, so that the new
block is the identity and the network's outputs are unchanged at insertion;
then train, and the block learns from there.

The task is synthetic and CPU-cheap: clips of ``T`` frames in which a
textured square moves in one of four directions over noise; the class is the
direction. The network is a stem, one I3D-style bottleneck stage (a 3x1x1
temporal convolution inflated in front of a 1x3x3 spatial one) and a
global-average-pooled linear classifier.

Run::

    python examples/video_classification_nonlocal.py            # ~1 minute on a laptop
    python examples/video_classification_nonlocal.py --quick    # seconds

It prints the loss of the trained network, the largest change of its output
when the block is inserted (0), and the loss while only the block trains.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from nlmeans.neural import NonLocalBlock3d

DIRECTIONS = ((0, 1), (0, -1), (1, 0), (-1, 0))  # right, left, down, up


def make_clips(n: int, *, frames: int = 8, size: int = 16, seed: int = 0):
    """``n`` clips ``(n, 1, T, size, size)`` and their direction labels."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, len(DIRECTIONS), (n,), generator=g)
    clips = 0.3 * torch.randn(n, 1, frames, size, size, generator=g)
    texture = torch.rand(n, 4, 4, generator=g) + 0.5
    for i in range(n):
        dy, dx = DIRECTIONS[int(labels[i])]
        y0 = int(torch.randint(2, size - 6, (1,), generator=g))
        x0 = int(torch.randint(2, size - 6, (1,), generator=g))
        for t in range(frames):
            y = (y0 + dy * t) % (size - 4)
            x = (x0 + dx * t) % (size - 4)
            clips[i, 0, t, y : y + 4, x : x + 4] += texture[i]
    return clips, labels


class Bottleneck3d(nn.Module):
    """I3D-style residual bottleneck: 3x1x1 (temporal) -> 1x3x3 (spatial) -> 1x1x1."""

    def __init__(self, channels: int, inner: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(channels, inner, (3, 1, 1), padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(inner),
            nn.ReLU(inplace=True),
            nn.Conv3d(inner, inner, (1, 3, 3), padding=(0, 1, 1), bias=False),
            nn.BatchNorm3d(inner),
            nn.ReLU(inplace=True),
            nn.Conv3d(inner, channels, 1, bias=False),
            nn.BatchNorm3d(channels),
        )

    def forward(self, x):
        return torch.relu(self.body(x) + x)


class TinyVideoNet(nn.Module):
    """Stem, one stage of bottlenecks (where non-local blocks go), pooled classifier."""

    def __init__(self, channels: int = 16, classes: int = len(DIRECTIONS)):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(1, channels, (1, 3, 3), padding=(0, 1, 1), bias=False),
            nn.BatchNorm3d(channels),
            nn.ReLU(inplace=True),
        )
        self.stage = nn.Sequential(
            Bottleneck3d(channels, channels // 2), Bottleneck3d(channels, channels // 2)
        )
        self.head = nn.Linear(channels, classes)

    def forward(self, x):
        x = self.stage(self.stem(x))
        return self.head(x.mean(dim=(2, 3, 4)))


class Contiguous(nn.Module):
    """Return the input in the default memory layout.

    The block's output holds exactly the input's values at insertion, but in
    a channels-last layout (from the attention); the next convolution would
    then pick another kernel, whose float rounding differs by ~1e-7.
    """

    def forward(self, x):
        return x.contiguous()


def insert_non_local(net: TinyVideoNet, after: int = 0, **options) -> NonLocalBlock3d:
    """Insert a zero-initialised :class:`NonLocalBlock3d` after bottleneck ``after`` of the stage."""
    channels = net.head.in_features
    block = NonLocalBlock3d(channels, **options)  # zero_init=True: the identity at insertion
    layers = list(net.stage)
    layers[after + 1 : after + 1] = [block, Contiguous()]
    net.stage = nn.Sequential(*layers)
    return block


def train(net, parameters, clips, labels, steps: int, lr: float = 3e-3) -> list[float]:
    """Adam on one fixed batch; returns the loss before each step and after the last."""
    opt = torch.optim.Adam(parameters, lr=lr)
    losses = []
    net.train()
    for _ in range(steps):
        loss = nn.functional.cross_entropy(net(clips), labels)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        losses.append(float(nn.functional.cross_entropy(net(clips), labels)))
    return losses


def run(
    *,
    clips: int = 64,
    frames: int = 8,
    size: int = 16,
    pretrain_steps: int = 60,
    block_steps: int = 60,
    seed: int = 0,
) -> dict:
    """The whole recipe; returns the numbers the script prints."""
    torch.manual_seed(seed)
    x, y = make_clips(clips, frames=frames, size=size, seed=seed)
    net = TinyVideoNet()
    pretrain = train(net, net.parameters(), x, y, pretrain_steps)

    net.eval()
    with torch.no_grad():
        before = net(x)
    block = insert_non_local(net, after=0, window=None)
    net.eval()
    with torch.no_grad():
        after = net(x)
    change_at_insertion = float((after - before).abs().max())

    # Only the new block learns; everything trained before stays frozen
    # (BatchNorm statistics included: the backbone stays in eval mode).
    for p in net.parameters():
        p.requires_grad_(False)
    for p in block.parameters():
        p.requires_grad_(True)
    opt = torch.optim.Adam(block.parameters(), lr=3e-3)
    losses = []
    for _ in range(block_steps):
        net.eval()
        block.train()
        loss = nn.functional.cross_entropy(net(x), y)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        final = float(nn.functional.cross_entropy(net(x), y))
    return {
        "pretrain_loss": pretrain[-1],
        "change_at_insertion": change_at_insertion,
        "block_loss_start": losses[0] if losses else final,
        "block_loss_end": final,
        "block_gamma_abs_max": block.w_z[1].weight.detach().abs().max().item(),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny run (seconds)")
    args = parser.parse_args(argv)
    options = (
        dict(clips=16, frames=4, size=10, pretrain_steps=8, block_steps=8) if args.quick else {}
    )
    result = run(**options)
    print(f"trained network, loss on its batch:          {result['pretrain_loss']:.4f}")
    print(f"largest output change when the block is added: {result['change_at_insertion']:.3g}")
    print(
        f"training only the block: loss {result['block_loss_start']:.4f} -> "
        f"{result['block_loss_end']:.4f} (BatchNorm scale of W_z now up to "
        f"{result['block_gamma_abs_max']:.3g})"
    )
    return result


if __name__ == "__main__":
    main()
