"""The ToonTalker generator of one domain: appearance encoder, motion encoder, query transformers into the
canonical space and back, and the StyleGAN2-style synthesis that warps and fuses the source features."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ...core.errors import ConfigError
from .blocks import EqualLinear, FuseSFT, QueryDecoderLayer, StyledConv, StyleEncoder, ToFlow, ToRGB, channel_map

MASK_INIT_LOGIT = 3.0  # sigmoid(3) = 0.95: the warped source feature dominates at initialisation

FUSION_MODES = ("release", "corrected")
"""``fusion`` config values: how the decoder fuses the SFT-refined warped feature with its own feature from 64 px up.

- ``release``: exactly what the public release computes (and what its weights were trained with):
  ``out = sft(w) + out * (1 - (w + out * (1 - mask)))``, where ``w`` is the masked warped feature before SFT — the
  release's ``ToFlow`` returns the fused feature ``w + out * (1 - mask)`` where its decoder expects the mask — with
  the sampling grid built as the release builds it (``numpy.linspace`` rounded to float32).
- ``corrected``: the intended ``out = sft(w) + out * (1 - mask)`` on a ``torch.linspace`` grid, for training from
  scratch.

Below 64 px both modes fuse ``w + out * (1 - mask)``, as the release does.
"""


TRANSFORMER_NORMS = ("post", "pre")
"""``transformer_norm`` config values: where the query transformers normalise. ``post`` (DETR's order, the release's)
after each residual sum; ``pre`` before each sub-layer, leaving the residual stream unnormalised, so a motion feature
added to the memory queries is not rescaled away (see ``docs/toontalker.md``, the `tiny` profile)."""


def choice(cfg: dict[str, Any], key: str, choices: tuple[str, ...], default: str) -> str:
    """``cfg[key]`` (default ``default``), which must be one of ``choices``."""
    value = str(cfg.get(key, default))
    if value not in choices:
        raise ConfigError(f"toontalker {key} must be one of {', '.join(choices)}, got {value!r}")
    return value


class Synthesis(nn.Module):
    """StyleGAN2-style decoder: per scale two styled convs, a flow+mask head that warps the source feature of that
    scale and fuses it with the decoder feature, and an RGB skip computed from the warped feature."""

    def __init__(self, size: int, channels: dict[int, int], style_dim: int, fusion: str = "corrected") -> None:
        super().__init__()
        if fusion not in FUSION_MODES:
            raise ConfigError(f"toontalker fusion must be one of {', '.join(FUSION_MODES)}, got {fusion!r}")
        self.fusion = fusion
        self.const = nn.Parameter(torch.randn(1, channels[4], 4, 4))
        self.conv1 = StyledConv(channels[4], channels[4], 3, style_dim)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.to_flows = nn.ModuleList()
        self.sft = nn.ModuleList()
        self.resolutions = [2 ** i for i in range(3, int(math.log2(size)) + 1)]
        cin = channels[4]
        for res in self.resolutions:
            cout = channels[res]
            self.convs.append(StyledConv(cin, cout, 3, style_dim, upsample=True))
            self.convs.append(StyledConv(cout, cout, 3, style_dim))
            self.to_rgbs.append(ToRGB(cout))
            self.to_flows.append(ToFlow(cout, style_dim, release_grid=fusion == "release"))
            if res >= 64:  # the release refines warped features with SFT from 64 px up
                self.sft.append(FuseSFT(cout, style_dim))
            cin = cout
        for head in self.to_flows:  # start from an identity warp with open masks (see docs: departures)
            nn.init.zeros_(head.conv.weight)
            with torch.no_grad():
                head.bias[0, 2] = MASK_INIT_LOGIT
        self.n_codes = 2 * len(self.resolutions) + 2

    def forward(self, codes: torch.Tensor, feats: list[torch.Tensor]) -> torch.Tensor:
        """``codes`` ``(B, n_codes, d)``; ``feats`` source features at 8 px .. size. Returns an image in [-1, 1]."""
        out = self.const.expand(codes.shape[0], -1, -1, -1)
        out = self.conv1(out, codes[:, 0])
        rgb = flow = None
        sft = iter(self.sft)
        for k, (res, feat) in enumerate(zip(self.resolutions, feats)):
            i = 2 * k + 1
            out = self.convs[2 * k](out, codes[:, i])
            out = self.convs[2 * k + 1](out, codes[:, i + 1])
            warped, mask, flow = self.to_flows[k](out, codes[:, i + 2], feat, flow)
            if res < 64:
                out = warped + out * (1 - mask)
            else:  # SFT-refined warp, fused as FUSION_MODES describes
                refined = next(sft)(warped, codes[:, i + 2])
                if self.fusion == "release":
                    out = refined + out * (1 - (warped + out * (1 - mask)))
                else:
                    out = refined + out * (1 - mask)
                warped = refined
            rgb = self.to_rgbs[k](warped, rgb)
        assert rgb is not None
        return rgb


class DomainGenerator(nn.Module):
    """One domain's animator (the release's ``Generator_trans_w``)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        size, d = int(cfg["size"]), int(cfg["style_dim"])
        ch = channel_map(size, int(cfg["channel_base"]), int(cfg["channel_max"]))
        if size < 64 or size & (size - 1):
            raise ConfigError(f"toontalker size must be a power of two >= 64, got {size}")
        if ch[4] != d or ch[16] != d:
            raise ConfigError(f"toontalker needs 4 px and 16 px encoder channels == style_dim={d}, got {ch[4]}/{ch[16]}",
                              hint="adjust channel_base/channel_max or style_dim")
        n_tok, heads, ff = int(cfg["motion_tokens"]), int(cfg["heads"]), int(cfg["ff_dim"])
        pre = choice(cfg, "transformer_norm", TRANSFORMER_NORMS, "post") == "pre"
        self.app_enc = StyleEncoder(size, ch)                 # appearance: multi-scale feature maps
        self.motion_enc = StyleEncoder(size, ch, out_dim=d)   # image -> d-D motion feature
        self.memory = nn.Embedding(n_tok, d)                  # learnable motion base memory (query tokens)
        if cfg.get("memory_init_std") is not None:  # else nn.Embedding's own draw, N(0, 1)
            nn.init.normal_(self.memory.weight, std=float(cfg["memory_init_std"]))
        self.t_src = QueryDecoderLayer(d, heads, ff, pre_norm=pre)  # source query transformer
        self.t_drv = QueryDecoderLayer(d, heads, ff, pre_norm=pre)  # driving query transformer
        self.back = nn.ModuleList([QueryDecoderLayer(d, heads, ff, pre_norm=pre) for _ in range(3)])  # -> this domain
        self.lateral = nn.Conv2d(ch[64], d, 3, padding=1)
        self.synth = Synthesis(size, ch, d, choice(cfg, "fusion", FUSION_MODES, "corrected"))
        self.to_codes = EqualLinear(n_tok * d, self.synth.n_codes * d)
        # canonical tokens straight to the codes, beside the back-projection (``token_skip``; not in the paper)
        self.token_skip = EqualLinear(n_tok * d, self.synth.n_codes * d) if cfg.get("token_skip", False) else None
        self.style_dim = d

    # motion -------------------------------------------------------------------------------------------------
    def motion(self, x: torch.Tensor) -> torch.Tensor:
        return self.motion_enc(x)[0]

    def _queries(self, b: int) -> torch.Tensor:
        return self.memory.weight.unsqueeze(0).expand(b, -1, -1)

    def canon_src(self, m: torch.Tensor, via: DomainGenerator | None = None) -> torch.Tensor:
        """Source motion feature ``(B, d)`` -> canonical tokens ``(B, N, d)`` (through ``via``'s ``t_src`` with this
        generator's queries when given; see ``model.CROSS_DOMAIN_TRANSFORMERS``)."""
        return (via or self).t_src(self._queries(m.shape[0]), m.unsqueeze(1))

    def canon_drv(self, m: torch.Tensor, via: DomainGenerator | None = None) -> torch.Tensor:
        """Driving motion feature ``(B, d)`` -> canonical tokens ``(B, N, d)`` (``via``: as :meth:`canon_src`)."""
        return (via or self).t_drv(self._queries(m.shape[0]), m.unsqueeze(1))

    # appearance + decoding ----------------------------------------------------------------------------------
    def appearance(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Source feature maps ordered 4 px .. size."""
        return self.app_enc(x)[1]

    def codes(self, q: torch.Tensor, feats: list[torch.Tensor]) -> torch.Tensor:
        """Project canonical tokens back to this domain (cross-attending 4, 16, 64 px source features) and map them
        to the synthesis's per-layer codes ``(B, n_codes, d)``."""
        f4, f16, f64 = feats[0], feats[2], self.lateral(feats[4])
        canonical = q
        for layer, f in zip(self.back, (f4, f16, f64)):
            q = layer(q, f.flatten(2).transpose(1, 2))
        codes = self.to_codes(q.flatten(1))
        if self.token_skip is not None:
            codes = codes + self.token_skip(canonical.flatten(1))
        return codes.view(q.shape[0], -1, self.style_dim)

    def decode(self, q: torch.Tensor, feats: list[torch.Tensor]) -> torch.Tensor:
        """Canonical tokens + source features -> image in [-1, 1]."""
        return self.synth(self.codes(q, feats), feats[1:])
