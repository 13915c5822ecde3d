"""Non-saturating logistic GAN losses and the R1 gradient penalty."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: softplus(-D(G(z)))."""
    return F.softplus(-fake_logits.float()).mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Logistic discriminator loss: softplus(D(fake)) + softplus(-D(real))."""
    return F.softplus(fake_logits.float()).mean() + F.softplus(-real_logits.float()).mean()


def r1_penalty(real_images: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """Mean squared gradient norm of D at the real images (they must require grad)."""
    (grad,) = torch.autograd.grad(real_logits.float().sum(), real_images, create_graph=True)
    return grad.float().square().sum(dim=(1, 2, 3)).mean()


def path_length_penalty(
    images: torch.Tensor, ws: torch.Tensor, pl_mean: torch.Tensor, *, decay: float, noise: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (|J^T y| - a)^2 with y ~ N(0, I) / sqrt(H W), and the updated running mean a (lerp by decay).

    |J^T y| is the RMS over the ws layers of the gradient norm of sum(images * y) with respect to each style;
    y is drawn here unless `noise` gives it (the trainer draws a whole batch's before splitting it into rounds).
    """
    if noise is None:
        noise = torch.randn_like(images) / (images.shape[2] * images.shape[3]) ** 0.5
    (grads,) = torch.autograd.grad((images * noise).float().sum(), ws, create_graph=True)
    lengths = grads.float().square().sum(dim=2).mean(dim=1).sqrt()
    new_mean = pl_mean.lerp(lengths.mean().detach().to(pl_mean.dtype), decay)
    return (lengths - new_mean).square(), new_mean
