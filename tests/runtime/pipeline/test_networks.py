"""Generator/discriminator shapes, truncation toward w_avg, style mixing and constant noise."""

from __future__ import annotations

import math

import pytest
import torch

from runtime.pipeline.stylegan2.config import ModelConfig, preset
from runtime.pipeline.stylegan2.networks import Discriminator, Generator, SynthesisLayer, lrelu


@pytest.fixture(scope="module")
def generator() -> Generator:
    torch.manual_seed(0)
    g = Generator(preset("tiny", resolution=16)).eval()
    with torch.no_grad():
        g.mapping.w_avg.normal_()  # a non-trivial average latent
    return g


@pytest.mark.parametrize("resolution", [8, 16, 32])
def test_shapes(resolution: int) -> None:
    cfg = preset("tiny", resolution=resolution)
    g, d = Generator(cfg), Discriminator(cfg)
    z = torch.randn(4, 512)
    images = g(z)
    assert images.shape == (4, 3, resolution, resolution)
    assert g.num_ws == 2 * (resolution.bit_length() - 2)
    assert g.styles(z).shape == (4, g.num_ws, cfg.w_dim)
    assert d(images).shape == (4,)
    assert d(images[:3]).shape == (3,)  # batch not divisible by the mbstd group


def test_channel_widths_follow_config() -> None:
    cfg = ModelConfig(resolution=512, channel_base=32768, channel_max=512)
    assert [cfg.channels(r) for r in (4, 64, 128, 512)] == [512, 512, 256, 64]
    with pytest.raises(ValueError, match="power of two"):
        ModelConfig(resolution=48)


def test_truncation_zero_gives_the_w_avg_image_for_any_z(generator: Generator) -> None:
    z = torch.randn(3, 512)
    with torch.no_grad():
        images = generator(z, 0.0, noise_mode="const")
        ws_avg = generator.mapping.w_avg.expand(1, generator.num_ws, -1)
        expected = generator.synthesis(ws_avg, noise_mode="const")
    for image in images:
        torch.testing.assert_close(image, expected[0], atol=1e-5, rtol=0)
    with torch.no_grad():
        assert not torch.allclose(generator(z, 1.0, noise_mode="const")[0], expected[0], atol=1e-2)


def test_truncation_one_leaves_output_unchanged(generator: Generator) -> None:
    z = torch.randn(2, 512)
    with torch.no_grad():
        plain = generator.synthesis(generator.styles(z), noise_mode="const")
        for psi in (1.0, torch.ones(1)):
            torch.testing.assert_close(generator(z, psi, noise_mode="const"), plain, atol=1e-6, rtol=0)
        half = generator(z, torch.tensor([0.5]), noise_mode="const")
    assert not torch.allclose(half, plain, atol=1e-3)


def test_style_mixing_uses_a_second_latent_after_the_cutoff(generator: Generator) -> None:
    z = torch.randn(2, 512)
    with torch.no_grad():
        plain = generator.styles(z)
        mixed = generator.styles(z, mixing_prob=1.0)
    same = [torch.equal(mixed[:, i], plain[:, i]) for i in range(generator.num_ws)]
    cutoff = same.index(False)
    assert cutoff >= 1 and all(same[:cutoff]) and not any(same[cutoff:])


def test_const_noise_is_deterministic_and_random_noise_is_not(generator: Generator) -> None:
    with torch.no_grad():
        for layer in generator.modules():
            if isinstance(layer, SynthesisLayer):
                layer.noise_strength.fill_(0.5)
        z = torch.randn(1, 512)
        const_a, const_b = generator(z, noise_mode="const"), generator(z, noise_mode="const")
        random_a, random_b = generator(z, noise_mode="random"), generator(z, noise_mode="random")
        for layer in generator.modules():
            if isinstance(layer, SynthesisLayer):
                layer.noise_strength.fill_(0.0)
    assert torch.equal(const_a, const_b)
    assert not torch.equal(random_a, random_b)


def test_w_avg_tracks_the_mapping_output() -> None:
    torch.manual_seed(1)
    g = Generator(preset("tiny", resolution=8))
    z = torch.randn(64, 512)
    for _ in range(10):
        g.styles(z, update_w_avg=True)
    # An exponential moving average from zero with beta 0.995 covers 1 - beta**10 of the mean after 10 updates.
    expected = g.mapping(z).mean(0) * (1 - 0.995**10)
    torch.testing.assert_close(g.mapping.w_avg, expected, atol=1e-5, rtol=1e-4)


def test_lrelu_is_the_reference_activation() -> None:
    """StyleGAN2's bias_act 'lrelu': slope 0.2 for negatives, gain sqrt(2) on both sides (the export shares it)."""
    x = torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0])
    expected = torch.tensor([-0.4, -0.2, 0.0, 1.0, 3.0]) * math.sqrt(2.0)
    torch.testing.assert_close(lrelu(x), expected, rtol=0, atol=1e-7)
