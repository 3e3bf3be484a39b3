"""The straightforward implementation the benchmarks compare against, in the course notebook's style.

- training: a torch.utils.data.DataLoader over a Dataset of per-sample float tensors (shuffle, batch 128), fp32,
  eager, global RNG, `loss.item()` every step;
- sampling: one class at a time (4 images), two UNet calls (conditional, unconditional) per CFG step, fp32, eager.

It uses the project's UNet (the same network) so that the ratios measure the surrounding code, not the model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from diffusionlab.networks.unet import UNet


class PerSampleDataset(Dataset):
    """What torchvision's MNIST + ToTensor gives: one float tensor per image, built per item."""

    def __init__(self, images_uint8: torch.Tensor, labels: torch.Tensor) -> None:
        self.images = [img for img in images_uint8]
        self.labels = [int(v) for v in labels]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i].float().div(255.0), self.labels[i]


def ddpm_schedule(T: int = 300, device="cpu"):
    betas = torch.linspace(1e-4, 0.02, T, device=device)
    alphas = 1 - betas
    abar = torch.cumprod(alphas, 0)
    return betas, alphas, abar


def make_loader(images_uint8, labels, batch_size=128, seed=0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    return DataLoader(PerSampleDataset(images_uint8, labels), batch_size=batch_size, shuffle=True, generator=g)


def train_steps(net: UNet, loader: DataLoader, num_steps: int, device="cpu", T: int = 300, p_uncond: float = 0.1):
    """num_steps optimizer steps of the class-conditioned DDPM (B2.4), the notebook's way. Returns the losses."""
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    _, _, abar = ddpm_schedule(T, device)
    net.train()
    losses = []
    while len(losses) < num_steps:
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            c = F.one_hot(y, 10).float()
            mask = (torch.rand(x.shape[0], device=device) >= p_uncond).float()
            c = c * mask[:, None]
            t = torch.randint(1, T + 1, (x.shape[0],), device=device)
            eps = torch.randn_like(x)
            ab = abar[t - 1].view(-1, 1, 1, 1)
            x_t = ab.sqrt() * x + (1 - ab).sqrt() * eps
            loss = F.mse_loss(net(x_t, t.float() / T, c), eps)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if len(losses) == num_steps:
                break
    return losses


@torch.no_grad()
def sample_class(
    net: UNet,
    label: int,
    n: int = 4,
    guidance: float = 5.0,
    T: int = 300,
    num_steps: int | None = None,
    device="cpu",
    seed: int = 0,
):
    """CFG DDPM sampling (B2.3 + B2.5) of n images of one class: two UNet calls per step.

    num_steps < T runs only the first num_steps steps of the loop (for timing on slow machines)."""
    betas, alphas, abar = ddpm_schedule(T, device)
    net.eval()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 28, 28, generator=g).to(device)
    c = F.one_hot(torch.full((n,), label), 10).float().to(device)
    c0 = torch.zeros_like(c)
    for i, t in enumerate(range(T, 0, -1)):
        if num_steps is not None and i >= num_steps:
            break
        tt = torch.full((n,), t / T, device=device)
        eps_c = net(x, tt, c)
        eps_u = net(x, tt, c0)
        eps = eps_u + guidance * (eps_c - eps_u)
        ab_t = abar[t - 1]
        ab_prev = abar[t - 2] if t > 1 else torch.tensor(1.0, device=device)
        x0 = (x - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()
        z = torch.randn(n, 1, 28, 28, generator=g).to(device) if t > 1 else 0
        x = (
            (ab_prev.sqrt() * betas[t - 1] / (1 - ab_t)) * x0
            + (alphas[t - 1].sqrt() * (1 - ab_prev) / (1 - ab_t)) * x
            + betas[t - 1].sqrt() * z
        )
    return x


def sample_all_classes(net: UNet, per_class: int = 4, **kw) -> torch.Tensor:
    """40 CFG samples the notebook's way: one class of 4 images at a time."""
    return torch.cat([sample_class(net, k, per_class, **kw) for k in range(10)])
