"""Generator and discriminator shapes, padding and initialisation; the tissue prior."""

from __future__ import annotations

import numpy as np
import torch

from mriganx.config import Direction, Upsampling
from mriganx.networks import PRIOR_KNOTS, ResnetGenerator, _upsample, TissuePrior, fit_prior, init_weights, patch_discriminator


def test_generator_keeps_shape_and_range() -> None:
    g = ResnetGenerator(ngf=8, n_blocks=2)
    out = g(torch.randn(2, 1, 44, 36) * 3)
    assert out.shape == (2, 1, 44, 36)
    assert out.abs().max() <= 1.0


def test_generator_uses_reflection_padding_everywhere_it_can() -> None:
    g = ResnetGenerator(ngf=8, n_blocks=3)
    convs = [m for m in g.modules() if type(m) is torch.nn.Conv2d]
    assert convs and all(c.padding_mode == "reflect" for c in convs)
    norms = [m for m in g.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    assert len(norms) == 2 + 2 * 3 + 2 + 1


def test_patch_discriminator_is_70x70_with_instance_norm() -> None:
    d = patch_discriminator(ndf=64, n_layers=3)
    assert any(isinstance(m, torch.nn.InstanceNorm2d) for m in d.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())
    # Receptive field of the stacked convolutions (instance norm aside, which sees the whole image): 70 pixels.
    field, jump = 1, 1
    for conv in [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]:
        field += (conv.kernel_size[0] - 1) * jump
        jump *= conv.stride[0]
    assert field == 70
    assert d(torch.zeros(1, 1, 64, 64))[-1].shape[1] == 1


def test_init_normal_002() -> None:
    g = ResnetGenerator(ngf=16, n_blocks=2)
    init_weights(g)
    weights = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, torch.nn.Conv2d)])
    assert 0.015 < weights.std() < 0.025


def test_group_norm_swap_is_instance_norm() -> None:
    # The shipped networks use GroupNorm with one group per channel in place of InstanceNorm2d (a faster kernel);
    # outputs and gradients must match the instance-norm network, and weights must load either way.
    from mriganx.config import ModelConfig
    from mriganx.networks import build_critic, build_generator

    torch.manual_seed(0)
    plain = ResnetGenerator(ngf=8, n_blocks=2, pointwise=4)
    swapped = build_generator(ModelConfig(ngf=8, n_blocks=2, pointwise=4), Direction.T1_TO_T2)
    assert not any(isinstance(m, torch.nn.InstanceNorm2d) for m in swapped.modules())
    swapped.load_state_dict(plain.state_dict())
    x = torch.randn(2, 1, 32, 36, requires_grad=True)
    y_plain, y_swapped = plain(x), swapped(x)
    assert torch.allclose(y_plain, y_swapped, atol=1e-5)
    (g_plain,) = torch.autograd.grad(y_plain.square().sum(), x)
    (g_swapped,) = torch.autograd.grad(y_swapped.square().sum(), x)
    assert torch.allclose(g_plain, g_swapped, atol=1e-4)
    critic, reference = build_critic(ModelConfig(ndf=8)), patch_discriminator(ndf=8)
    assert any(isinstance(m, torch.nn.InstanceNorm2d) for m in reference.modules())
    assert not any(isinstance(m, torch.nn.InstanceNorm2d) for m in critic.modules())
    critic.load_state_dict(reference.state_dict())
    z = torch.randn(2, 1, 64, 64)
    assert torch.allclose(critic(z)[-1], reference(z)[-1], atol=1e-5)


def test_head_kernel_is_configurable() -> None:
    from mriganx.config import ModelConfig
    from mriganx.networks import build_generator

    g = build_generator(ModelConfig(ngf=4, n_blocks=1, head_kernel=3), Direction.T1_TO_T2)
    last = [m for m in g.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    assert last.kernel_size == (3, 3) and last.padding_mode == "reflect"
    assert g(torch.zeros(1, 1, 32, 36)).shape == (1, 1, 32, 36)


def test_tissue_prior_is_linear_interpolation_and_flat_outside() -> None:
    x = torch.tensor([-0.8, -0.3, 0.1, 0.7])
    y = torch.tensor([0.9, 0.2, -0.1, -0.6])
    prior = TissuePrior(4)
    prior.set_knots(x, y)
    values = torch.linspace(-1.0, 1.0, 201)
    expected = np.interp(values.numpy(), x.numpy(), y.numpy())  # np.interp is flat outside the knots too
    assert np.allclose(prior(values).detach().numpy(), expected, atol=1e-6)


def test_fit_prior_reverses_the_tissue_order() -> None:
    # T1w-like brain: CSF dark (10 %), grey matter mid, white matter bright; T2w-like the other way round.
    t1 = torch.cat([torch.full((100,), -0.6), torch.full((400,), 0.1), torch.full((500,), 0.6)])
    t2 = torch.cat([torch.full((100,), 0.8), torch.full((400,), -0.2), torch.full((500,), -0.5)])
    x, y = fit_prior(t1 + 0.01 * torch.randn(1000), t2 + 0.01 * torch.randn(1000), blend=0.0)
    prior = TissuePrior()
    prior.set_knots(x, y)
    csf, grey, white = prior(torch.tensor([-0.6, 0.1, 0.6])).tolist()
    assert csf > grey > white
    assert abs(csf - 0.8) < 0.1 and abs(white + 0.5) < 0.1


def test_a_generator_with_a_prior_starts_as_its_prior() -> None:
    g = ResnetGenerator(ngf=8, n_blocks=2, pointwise=4, prior=True)
    init_weights(g)
    g.zero_last_layers()
    g.prior.set_knots(torch.linspace(-1, 1, PRIOR_KNOTS), -torch.linspace(-1, 1, PRIOR_KNOTS) * 0.9)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    assert torch.allclose(g(x), -0.9 * x, atol=1e-5)
    # ... and it can learn away from it: the last layers get gradients.
    g(x).sum().backward()
    assert g.model[-1].conv.weight.grad.abs().sum() > 0


def test_the_prior_blur_keeps_flat_regions_and_survives_weight_initialisation() -> None:
    prior = TissuePrior(smooth=1.0)
    init_weights(prior)  # the blur is a fixed buffer: the CycleGAN initialisation must not re-draw it
    prior.set_knots(torch.linspace(-1, 1, PRIOR_KNOTS), -torch.linspace(-1, 1, PRIOR_KNOTS))
    flat = torch.full((1, 1, 12, 12), 0.3)
    assert torch.allclose(prior(flat), -flat, atol=1e-6)
    noisy = flat + 0.2 * torch.randn(1, 1, 12, 12)
    assert prior(noisy).std() < 0.5 * noisy.std()  # the noise is smoothed before the map


def test_values_below_the_darkest_tissue_do_not_move_the_noise_floor() -> None:
    tissue = torch.linspace(-0.6, 0.8, 2000)
    junk = torch.full((200,), -0.98)  # air in sinuses, bone: a tenth of the core in a thick lower slice
    target = torch.linspace(-0.7, 0.9, 2000)
    clean, _ = fit_prior(tissue, target)
    cut, _ = fit_prior(torch.cat([tissue, junk]), target, darkest_tissue=-0.9)
    uncut, _ = fit_prior(torch.cat([tissue, junk]), target)
    assert torch.allclose(cut, clean)
    assert uncut[1] < -0.95 < cut[1]  # without the cut the floor sits at noise level, and noise maps to tissue


def test_the_resize_decoder_has_no_transposed_convolution_and_no_checkerboard() -> None:
    # A flat feature map through one decoder stage: a stride-2 transposed 3x3 convolution overlaps unevenly and
    # prints a period-2 grid on it; resize-then-convolve keeps it flat.
    torch.manual_seed(0)
    flat = torch.ones(1, 4, 16, 16)
    for how, grid_expected in ((Upsampling.RESIZE, False), (Upsampling.TRANSPOSED, True)):
        stage = _upsample(4, 2, how)
        init_weights(stage)
        assert any(isinstance(m, torch.nn.ConvTranspose2d) for m in stage.modules()) is grid_expected
        out = stage.conv(flat) if how is Upsampling.TRANSPOSED else stage[1].conv(stage[0](flat))  # before the norm
        inner = out[0, :, 4:28, 4:28]
        phases = torch.stack([inner[:, i::2, j::2].mean() for i in (0, 1) for j in (0, 1)])
        assert bool(phases.std() > 1e-4) is grid_expected
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in ResnetGenerator(ngf=8, n_blocks=1).modules())


def test_the_resize_decoder_computes_the_same_at_the_input_resolution_in_evaluation() -> None:
    # Evaluation folds "upsample, then 3x3 convolution" into four 2x2 convolutions of the input; training runs it
    # as written. Odd sizes and a non-square map check the borders (reflection of the upsampled image).
    torch.manual_seed(0)
    stage = _upsample(6, 3, Upsampling.RESIZE)
    init_weights(stage, std=0.3)  # (a bias would not show: instance norm removes it)
    x = torch.randn(2, 6, 7, 10)
    stage.train()
    written = stage(x).detach()
    stage.eval()
    with torch.no_grad():
        folded = stage(x)
        scripted = torch.jit.script(stage)(x)
    assert folded.shape == written.shape == (2, 3, 14, 20)
    torch.testing.assert_close(folded, written, atol=1e-5, rtol=0)
    torch.testing.assert_close(scripted, folded, atol=1e-6, rtol=0)
