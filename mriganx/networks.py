"""The CycleGAN networks, built from MONAI blocks.

- :class:`ResnetGenerator`: the ResNet translator of Zhu et al. 2017 (after Johnson et al. 2016): a 7x7 stem, two
  stride-2 downsamplings, ``n_blocks`` residual blocks, two transposed-convolution upsamplings, a 7x7 head and tanh;
  instance norm and reflection padding.
- :func:`patch_discriminator`: MONAI's ``PatchDiscriminator`` as the 70x70 PatchGAN with instance norm.
- :func:`build_generator` / :func:`build_critic`: both from a :class:`~mriganx.config.ModelConfig`, with one input
  channel per slice of the (2.5D) stack.
- :class:`TwoWayGenerator`: both directions in one module, the network of an exported model (a MONAI bundle's
  ``network_def``, its TorchScript ``model.ts``).
- :func:`masked`: the background rule every generator output goes through, in training and inference alike.

>>> import torch
>>> g = ResnetGenerator(ngf=8, n_blocks=2)
>>> g(torch.zeros(1, 1, 32, 36)).shape
torch.Size([1, 1, 32, 36])
>>> d = patch_discriminator(ndf=8)
>>> d(torch.zeros(1, 1, 64, 64))[-1].shape   # the last output holds the patch logits
torch.Size([1, 1, 6, 6])
"""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from monai.networks.nets import PatchDiscriminator
from torch import nn

from mriganx.config import GeneratorKind, ModelConfig


def masked(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Background (-1) wherever the input had no signal: air is dark in every contrast."""
    return torch.where(mask, images, -1.0)


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, act: str | None = "RELU") -> Convolution:
    """A MONAI conv -> instance norm -> ReLU block with reflection padding.

    MONAI's ``Convolution`` has no padding-mode argument; this is the one place where the generator's convolutions
    are switched to reflection padding (the paper's choice: zero padding leaves edge artefacts on translated images).
    """
    block = Convolution(
        spatial_dims=2, in_channels=in_ch, out_channels=out_ch, strides=stride, kernel_size=kernel,
        norm="INSTANCE", act=act,
    )
    block.conv.padding_mode = "reflect"
    return block


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels, 3), _conv(channels, channels, 3, act=None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """One direction of the translation: ``(n, 1, rows, cols)`` in [-1, 1] -> the same shape in [-1, 1].

    Rows and columns must be multiples of 4 (two stride-2 stages); :func:`mriganx.intensity.pad_slices` sees to it.
    """

    def __init__(self, ngf: int = 64, n_blocks: int = 9, in_channels: int = 1, out_channels: int = 1,
                 pointwise: int = 0, head_kernel: int = 7) -> None:
        super().__init__()
        # Optional per-pixel intensity path (1x1 convolutions, no normalisation) added before the tanh. Instance norm
        # makes the ResNet path see only relative intensities; this path can learn a lookup table of absolute ones
        # at once, which is most of a T1w <-> T2w translation, and leaves the ResNet path the spatial corrections.
        self.pointwise = None
        if pointwise > 0:
            self.pointwise = nn.Sequential(
                Convolution(2, in_channels, pointwise, kernel_size=1, norm=None, act="RELU"),
                Convolution(2, pointwise, pointwise, kernel_size=1, norm=None, act="RELU"),
                Convolution(2, pointwise, out_channels, kernel_size=1, conv_only=True),
            )
        up = [
            Convolution(2, ch, ch // 2, strides=2, kernel_size=3, norm="INSTANCE", act="RELU", is_transposed=True,
                        padding=1, output_padding=1)
            for ch in (ngf * 4, ngf * 2)
        ]
        head = Convolution(2, ngf, out_channels, kernel_size=head_kernel, conv_only=True)
        head.conv.padding_mode = "reflect"
        self.model = nn.Sequential(
            _conv(in_channels, ngf, 7),
            _conv(ngf, ngf * 2, 3, stride=2),
            _conv(ngf * 2, ngf * 4, 3, stride=2),
            *[ResidualBlock(ngf * 4) for _ in range(n_blocks)],
            *up,
            head,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if self.pointwise is not None:
            out = out + self.pointwise(x)
        return torch.tanh(out)


def patch_discriminator(ndf: int = 64, n_layers: int = 3, in_channels: int = 1) -> PatchDiscriminator:
    """The PatchGAN critic; with ``n_layers=3`` each logit sees a 70x70 patch. Its forward returns a list of
    intermediate features; the logits are the last entry."""
    # MONAI's default norm is batch norm; the CycleGAN uses instance norm.
    return PatchDiscriminator(
        spatial_dims=2, num_layers_d=n_layers, channels=ndf, in_channels=in_channels, out_channels=1, norm="INSTANCE"
    )


def instance_norm_as_group_norm(module: nn.Module) -> nn.Module:
    """Replace every ``InstanceNorm2d`` in ``module`` by the same normalisation written as ``GroupNorm`` with one
    group per channel; returns ``module``.

    Both normalise each channel of each sample over its pixels with the biased variance and the same epsilon, and
    neither has parameters or buffers here, so weights load either way. Only the kernel differs: on the CPUs we
    measured, GroupNorm's takes 7 % off a ``cpu``-config training step (``benchmarks/train_variants.py``).
    """
    for name, child in module.named_children():
        if isinstance(child, nn.InstanceNorm2d) and not child.affine and not child.track_running_stats:
            setattr(module, name, nn.GroupNorm(child.num_features, child.num_features, eps=child.eps, affine=False))
        else:
            instance_norm_as_group_norm(child)
    return module


def build_generator(config: ModelConfig) -> nn.Module:
    """The generator a model config describes; it maps a stack of ``config.channels`` slices to as many."""
    if config.generator is GeneratorKind.RESNET:
        return instance_norm_as_group_norm(ResnetGenerator(
            config.ngf, config.n_blocks, in_channels=config.channels, out_channels=config.channels, pointwise=config.pointwise,
            head_kernel=config.head_kernel,
        ))
    raise ValueError(f"unknown generator {config.generator}")


class TwoWayGenerator(nn.Module):
    """Both generators of a model in one module: ``forward(x)`` translates T1w -> T2w, ``forward(x, reverse=True)``
    T2w -> T1w. Scriptable (``torch.jit.script``), so one TorchScript file holds the whole model.

    >>> from mriganx.config import load_config
    >>> net = TwoWayGenerator(load_config("smoke").model)
    >>> net(torch.zeros(2, 1, 16, 20), reverse=True).shape
    torch.Size([2, 1, 16, 20])
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        # Named attributes, not a dict keyed by direction: TorchScript cannot index modules by a runtime value.
        self.t1_to_t2 = build_generator(config)
        self.t2_to_t1 = build_generator(config)

    def forward(self, x: torch.Tensor, reverse: bool = False) -> torch.Tensor:
        return self.t2_to_t1(x) if reverse else self.t1_to_t2(x)


def build_critic(config: ModelConfig) -> nn.Module:
    """The critic a model config describes; with context slices it judges whole stacks, so a translation whose
    neighbouring slices disagree looks fake."""
    return instance_norm_as_group_norm(patch_discriminator(config.ndf, config.d_layers, in_channels=config.channels))


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """The CycleGAN initialisation: convolution weights from N(0, 0.02), biases zero."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(layer.weight, 0.0, std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
