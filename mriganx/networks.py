"""The CycleGAN networks, built from MONAI blocks.

- :class:`ResnetGenerator`: the ResNet translator of Zhu et al. 2017 (after Johnson et al. 2016): a 7x7 stem, two
  stride-2 downsamplings, ``n_blocks`` residual blocks, two transposed-convolution upsamplings, a 7x7 head and tanh;
  instance norm and reflection padding. Optionally on top of a :class:`TissuePrior`.
- :class:`TissuePrior`: a piecewise-linear map of intensities (the calibrated
  tissue map the generator corrects; its knots come from the training data, :func:`fit_prior`).
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
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.nets import PatchDiscriminator
from torch import nn

from mriganx.config import Direction, GeneratorKind, ModelConfig, Upsampling
from mriganx.denoise import BilateralDenoise


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


def _upsample(in_ch: int, out_ch: int, how: Upsampling) -> nn.Module:
    if how is Upsampling.TRANSPOSED:
        return Convolution(2, in_ch, out_ch, strides=2, kernel_size=3, norm="INSTANCE", act="RELU", is_transposed=True,
                           padding=1, output_padding=1)
    return NearestUpConv(nn.Upsample(scale_factor=2, mode="nearest"), _conv(in_ch, out_ch, 3))


def _fold(w: torch.Tensor, axis: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A 3-tap kernel along ``axis`` as the two 2-tap kernels it is on a nearest-upsampled signal: output 2i sees
    (x[i-1], x[i], x[i]), so taps (w0, w1 + w2) on (x[i-1], x[i]); output 2i + 1 sees (x[i], x[i], x[i+1]), so
    taps (w0 + w1, w2) on (x[i], x[i+1])."""
    w0, w1, w2 = w.unbind(axis)
    return torch.stack([w0, w1 + w2], axis), torch.stack([w0 + w1, w2], axis)


class NearestUpConv(nn.Sequential):
    """Nearest-neighbour upsampling by 2, then a 3x3 convolution block with reflection padding (``_conv``).

    In training it runs as written. In evaluation it computes the same numbers (to float rounding) at the input's
    resolution: each of the four output phases is a 2x2 convolution of the input, padded by replication (which is
    what reflection padding of the upsampled image reads at the border), so the convolution costs 4/9 of the
    multiply-adds. Training keeps the reference computation so that a recipe retrained now gives the shipped
    weights bit for bit.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        block = self[1]
        if self.training:
            return block(self[0](x))
        top, bottom = _fold(block.conv.weight, 2)
        k00, k01 = _fold(top, 3)
        k10, k11 = _fold(bottom, 3)
        bias = block.conv.bias
        y = F.conv2d(F.pad(x, [1, 1, 1, 1], mode="replicate"), torch.cat([k00, k01, k10, k11]),
                     None if bias is None else bias.repeat(4))
        n = block.conv.weight.shape[0]  # output phase (row parity, column parity): p00, p01, p10, p11
        p00, p01, p10, p11 = y[:, :n], y[:, n:2 * n], y[:, 2 * n:3 * n], y[:, 3 * n:]
        rows, cols = x.shape[-2], x.shape[-1]
        even = torch.stack([p00[:, :, :rows, :cols], p01[:, :, :rows, 1:]], -1).flatten(-2)
        odd = torch.stack([p10[:, :, 1:, :cols], p11[:, :, 1:, 1:]], -1).flatten(-2)
        return block.adn(torch.stack([even, odd], -2).flatten(-3, -2))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels, 3), _conv(channels, channels, 3, act=None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


# Normalised intensity (5 % of the range) below which no T2w brain tissue lies: T2w's darkest tissue, white matter,
# sits far above noise. T1w's darkest, CSF, can sit at a few percent (it did in TCGA-DU-7294), so no such cut there.
T2W_NO_TISSUE = -0.9
PRIOR_KNOTS = 17  # knots of a TissuePrior: no signal, a noise floor, 15 quantiles (2 % .. 99.5 %) of the brain


class TissuePrior(nn.Module):
    """A piecewise-linear map of intensities in [-1, 1]: the answer a generator with a prior starts from.

    Between two neighbouring knots ``x[i] < x[i+1]`` it interpolates ``y[i]``, ``y[i+1]``; outside the knots it is
    flat. The knot positions are fixed (buffers); the values ``y`` are learnt. Written as a sum of clamped segments,
    so it is element-wise arithmetic that TorchScript and ONNX export exactly.

    >>> prior = TissuePrior(3)
    >>> prior.set_knots(torch.tensor([-1.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, -1.0]))
    >>> prior(torch.tensor([-2.0, -0.5, 0.25])).tolist()
    [1.0, 0.5, -0.25]
    """

    def __init__(self, knots: int = PRIOR_KNOTS, smooth: float = 0.0) -> None:
        super().__init__()
        # The identity until set_knots is called (a model built to load weights into gets them from the file).
        self.register_buffer("x", torch.linspace(-1.0, 1.0, knots))
        self.y = nn.Parameter(torch.linspace(-1.0, 1.0, knots))
        # Optional fixed Gaussian blur (sigma in pixels) of the input before the map: the expected other contrast
        # of a voxel does not carry this scan's noise, and the reversed map would otherwise stretch it.
        # A buffer, not a convolution layer: weight initialisation and the optimiser must leave it alone.
        radius = max(1, round(3 * smooth)) if smooth > 0 else 0
        taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1.0) / max(smooth, 1e-6)) ** 2)
        self.register_buffer("kernel", (taps[:, None] * taps[None, :] / taps.sum() ** 2)[None, None])

    @torch.no_grad()
    def set_knots(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x.copy_(x)
        self.y.copy_(y)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        if self.kernel.shape[-1] > 1:
            n, c = values.shape[:2]
            radius = self.kernel.shape[-1] // 2
            flat = values.reshape(n * c, 1, values.shape[2], values.shape[3])
            flat = torch.nn.functional.pad(flat, [radius, radius, radius, radius], mode="reflect")
            values = torch.nn.functional.conv2d(flat, self.kernel).reshape(values.shape)
        slopes = (self.y[1:] - self.y[:-1]) / (self.x[1:] - self.x[:-1]).clamp_min(1e-6)
        out = self.y[0] + torch.zeros_like(values)
        for i in range(slopes.shape[0]):  # each segment adds its rise up to where the value lies
            out = out + slopes[i] * (torch.minimum(values, self.x[i + 1]) - self.x[i]).clamp_min(0.0)
        return out


def fit_prior(source: torch.Tensor, target: torch.Tensor, blend: float = 0.5,
              darkest_tissue: float = -1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Knots of the calibrated tissue map from one contrast's brain intensities to the other's (both in [-1, 1]).

    T1w and T2w order the tissues the other way round (CSF is the darkest T1w tissue and the brightest T2w one), so
    the map sends the source's q-quantile to the target's (1 - q)-quantile: reversed quantile matching, which needs
    no pairs. It is blended with plain inversion (``-x``), which keeps more of the input's local contrast.

    Below the brain's darkest tissue (its 2 % quantile) lie air, bone and noise, dark in every contrast: the lower
    half of that gap maps to background (-1) and the upper half ramps up to the darkest tissue's value, instead of
    the other contrast's brightest tissue painting a haze into the air or over the skull.

    >>> x, y = fit_prior(torch.linspace(-0.5, 1, 101), torch.linspace(-0.5, 1, 101) ** 3, blend=0.0)
    >>> float(y[0]), float(y[1]), float(y[2]) > float(y[-1])
    (-1.0, -1.0, True)
    """
    q = torch.linspace(0.02, 0.995, PRIOR_KNOTS - 2)
    # Values at or below ``darkest_tissue`` are not tissue (air in sinuses, bone, noise in thick lower slices) and
    # must not set where the source's darkest tissue lies: the noise floor would sit at noise level and noisy air
    # would become the other contrast's brightest tissue.
    tissue = source[source > darkest_tissue]
    x = torch.quantile((tissue if tissue.numel() >= 100 else source).float(), q).clamp_min(-1.0 + 2e-3)
    x = torch.cummax(torch.maximum(x, x[0] + torch.arange(PRIOR_KNOTS - 2) * 1e-4), 0).values  # strictly increasing
    y = blend * -x + (1 - blend) * torch.quantile(target.float(), 1 - q)
    floor = (x[:1] - 1.0) / 2  # halfway between no signal and the darkest brain tissue
    return torch.cat([torch.tensor([-1.0]), floor, x]), torch.cat([torch.tensor([-1.0, -1.0]), y])


class ResnetGenerator(nn.Module):
    """One direction of the translation: ``(n, 1, rows, cols)`` in [-1, 1] -> the same shape in [-1, 1].

    Rows and columns must be multiples of 4 (two stride-2 stages); :func:`mriganx.intensity.pad_slices` sees to it.
    """

    def __init__(self, ngf: int = 64, n_blocks: int = 9, in_channels: int = 1, out_channels: int = 1,
                 pointwise: int = 0, head_kernel: int = 7, prior: bool = False, prior_smooth: float = 0.0,
                 upsample: Upsampling = Upsampling.RESIZE, denoise: float = 0.0) -> None:
        super().__init__()
        # Both paths see the denoised input: the correction learns on what the prior maps.
        self.denoise = BilateralDenoise(denoise) if denoise > 0 else None
        # With a prior the network learns a correction to a calibrated tissue map instead of the whole image: at the
        # start (last layers zero) it *is* that map, so training begins from an answer that already has the tissues
        # in the right order rather than from noise that must first discover the contrast inversion.
        self.prior = TissuePrior(smooth=prior_smooth) if prior else None
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
        up = [_upsample(ch, ch // 2, upsample) for ch in (ngf * 4, ngf * 2)]
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

    def zero_last_layers(self) -> None:
        """Start the correction at zero (the generator then returns its prior)."""
        for layer in [self.model[-1], self.pointwise[-1] if self.pointwise is not None else None]:
            if layer is not None:
                nn.init.zeros_(layer.conv.weight)
                nn.init.zeros_(layer.conv.bias)

    def tissue_map(self, x: torch.Tensor) -> torch.Tensor:
        """What the generator starts from and corrects: its prior of the (denoised) input."""
        if self.prior is None:
            raise ValueError("this generator has no tissue prior")
        return self.prior(self.denoise(x) if self.denoise is not None else x).clamp(-1.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.denoise is not None:
            x = self.denoise(x)
        out = self.model(x)
        if self.pointwise is not None:
            out = out + self.pointwise(x)
        if self.prior is not None:
            out = out + torch.atanh(self.prior(x).clamp(-0.995, 0.995))
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


def build_generator(config: ModelConfig, direction: Direction) -> nn.Module:
    """The generator of one direction a model config describes; it maps ``config.channels`` slices to as many."""
    side = 0 if direction is Direction.T1_TO_T2 else 1  # per-direction settings are (T1w->T2w, T2w->T1w)
    if config.generator is GeneratorKind.RESNET:
        return instance_norm_as_group_norm(ResnetGenerator(
            config.ngf, config.n_blocks, in_channels=config.channels, out_channels=config.channels, pointwise=config.pointwise,
            head_kernel=config.head_kernel, prior=config.prior, prior_smooth=config.prior_smooth[side],
            upsample=config.upsample, denoise=config.denoise[side],
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
        self.t1_to_t2 = build_generator(config, Direction.T1_TO_T2)
        self.t2_to_t1 = build_generator(config, Direction.T2_TO_T1)

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
