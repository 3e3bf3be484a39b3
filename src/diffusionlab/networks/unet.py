"""The course UNet: unconditional (B1), time-conditioned (B2), class-conditioned (B2.4), flow variants (B3)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import Tensor, nn

from diffusionlab.errors import DiffusionLabError
from diffusionlab.networks.blocks import ConvBlock, DownBlock, FCBlock, Flatten, Unflatten, UpBlock, concat


@dataclass(frozen=True)
class UNetConfig:
    """What a checkpoint needs to rebuild the network.

    time_mode: "add" (DDPM: Unflatten + t1) or "mul" (the course's flow time model: Unflatten * t1).
    With classes the combination is always c * h + t, as B2.4.
    image_size: the side of the (square) images; two stride-2 stages take it to the bottleneck's image_size / 4
    (7 at the course's 28 px), so it must be a multiple of 4. A checkpoint without it is a 28-px one.
    """

    hidden: int = 64
    in_channels: int = 1
    time_conditioned: bool = False
    num_classes: int = 0
    time_mode: str = "add"
    image_size: int = 28

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


def check_image_size(size: int, what: str = "--image-size") -> int:
    """The UNet halves the image twice before its bottleneck: a side that 4 does not divide cannot be rebuilt."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 4 or size % 4:
        raise DiffusionLabError(
            f"{what} must be a positive multiple of 4 (the UNet halves the image twice), got {size!r}"
        )
    return size


class UNet(nn.Module):
    """e1 = ConvBlock(C->D) @S, e2 = DownBlock(D->D) @S/2, e3 = DownBlock(D->2D) @S/4, Flatten/Unflatten (S/4 <->
    1), u1 = UpBlock(4D->D), u2 = UpBlock(2D->D), o = ConvBlock(2D->D), y = Conv2d(D->C); the course's S = 28, C = 1."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        if config.time_mode not in ("add", "mul"):
            raise DiffusionLabError(f"unknown time_mode {config.time_mode!r} (add or mul)")
        check_image_size(config.image_size, "the UNet's image_size")
        if isinstance(config.in_channels, bool) or not isinstance(config.in_channels, int) or config.in_channels < 1:
            raise DiffusionLabError(f"the UNet's in_channels must be a positive integer, got {config.in_channels!r}")
        self.config = config
        d, c_in, bottleneck = config.hidden, config.in_channels, config.image_size // 4
        self.e1 = ConvBlock(c_in, d)
        self.e2 = DownBlock(d, d)
        self.e3 = DownBlock(d, 2 * d)
        self.flatten = Flatten(bottleneck)
        self.unflatten = Unflatten(2 * d, bottleneck)
        self.u1 = UpBlock(4 * d, d)
        self.u2 = UpBlock(2 * d, d)
        self.o = ConvBlock(2 * d, d)
        self.out = nn.Conv2d(d, c_in, 3, 1, 1)
        if config.time_conditioned:
            self.t1 = FCBlock(1, 2 * d)
            self.t2 = FCBlock(1, d)
        if config.num_classes:
            self.c1 = FCBlock(config.num_classes, 2 * d)
            self.c2 = FCBlock(config.num_classes, d)

    def _condition(self, h: Tensor, t_emb: Tensor | None, c_emb: Tensor | None) -> Tensor:
        if c_emb is not None:
            h = h * c_emb[:, :, None, None]
        if t_emb is None:
            return h
        t_emb = t_emb[:, :, None, None]
        if self.config.time_mode == "mul" and c_emb is None:
            return h * t_emb
        return h + t_emb

    def forward(self, x: Tensor, t: Tensor | None = None, c: Tensor | None = None) -> Tensor:
        """x: (N, C, S, S); t: (N,) normalised time in [0, 1]; c: (N, num_classes) one-hot (zeros = uncond)."""
        return self.decode(self.encode(x), t, c)

    def encode(self, x: Tensor) -> tuple[Tensor, ...]:
        """The layers before the first condition (e1, e2, e3, Flatten/Unflatten): they depend on x alone, so CFG's
        branches and a hybrid's three share them (`branches`)."""
        c, s = self.config.in_channels, self.config.image_size
        if x.dim() != 4 or tuple(x.shape[1:]) != (c, s, s):
            raise DiffusionLabError(f"this UNet takes images (N, {c}, {s}, {s}), got {tuple(x.shape)}")
        e1 = self.e1(x)
        e2 = self.e2(e1)
        e3 = self.e3(e2)
        return e1, e2, e3, self.unflatten(self.flatten(e3))

    def decode(self, encoded: tuple[Tensor, ...], t: Tensor | None = None, c: Tensor | None = None) -> Tensor:
        """The rest of the network, where t and c enter (at Unflatten and the first UpBlock)."""
        cfg = self.config
        if cfg.time_conditioned and t is None:
            raise DiffusionLabError("this UNet is time-conditioned: pass t")
        if cfg.num_classes and c is None:
            raise DiffusionLabError("this UNet is class-conditioned: pass c")
        e1, e2, e3, u0 = encoded
        t_in = t.reshape(-1, 1).to(e1.dtype) if cfg.time_conditioned else None
        c_in = c.to(e1.dtype) if cfg.num_classes else None
        u0 = self._condition(
            u0,
            self.t1(t_in) if t_in is not None else None,
            self.c1(c_in) if c_in is not None else None,
        )
        u1 = self._condition(
            self.u1(concat(e3, u0)),
            self.t2(t_in) if t_in is not None else None,
            self.c2(c_in) if c_in is not None else None,
        )
        u2 = self.u2(concat(e2, u1))
        return self.out(self.o(concat(e1, u2)))

    def branches(self, x: Tensor, k: int, t: Tensor | None = None, c: Tensor | None = None) -> Tensor:
        """The network on k branches of one input: x (N, ...), t and c (k N, ...) branch-major; output (k N, ...).
        Equal to forward(cat([x] * k), t, c), with the encoder run once instead of k times."""
        encoded = tuple(h.repeat(k, *([1] * (h.dim() - 1))) for h in self.encode(x))
        return self.decode(encoded, t, c)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
