"""ToonTalker (Gong et al., ICCV 2023): cross-domain face reenactment by motion alignment in a canonical space.

One :class:`DomainGenerator` per domain (``real``, ``cartoon``), each a LIA-style latent animator whose motion path is
replaced by ToonTalker's query transformers. See ``docs/toontalker.md`` for the diagram, the losses and every
departure from the paper and the public release.

Within one generator, images are in [-1, 1] (the release's convention, so released weights work unchanged);
:class:`ToonTalker` converts from and to the toolkit's [0, 1].
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError
from ..domains import DOMAINS, Domain
from .base import METHODS, Capabilities, Method
from .blocks import (Discriminator, EqualLinear, FuseSFT, QueryDecoderLayer, StyleEncoder, StyledConv,
                     ToFlow, ToRGB, channel_map)

log = logging.getLogger(__name__)


MASK_INIT_LOGIT = 3.0  # sigmoid(3) = 0.95: the warped source feature dominates at initialisation


class Synthesis(nn.Module):
    """StyleGAN2-style decoder: per scale two styled convs, a flow+mask head that warps the source feature of that
    scale and fuses it with the decoder feature, and an RGB skip computed from the warped feature."""

    def __init__(self, size: int, channels: dict[int, int], style_dim: int) -> None:
        super().__init__()
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
            self.to_flows.append(ToFlow(cout, style_dim))
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
            if res >= 64:
                warped = next(sft)(warped, codes[:, i + 2])
            out = warped + out * (1 - mask)
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
        self.app_enc = StyleEncoder(size, ch)                 # appearance: multi-scale feature maps
        self.motion_enc = StyleEncoder(size, ch, out_dim=d)   # image -> d-D motion feature
        self.memory = nn.Embedding(n_tok, d)                  # learnable motion base memory (query tokens)
        self.t_src = QueryDecoderLayer(d, heads, ff)          # source query transformer
        self.t_drv = QueryDecoderLayer(d, heads, ff)          # driving query transformer
        self.back = nn.ModuleList([QueryDecoderLayer(d, heads, ff) for _ in range(3)])  # canonical -> this domain
        self.lateral = nn.Conv2d(ch[64], d, 3, padding=1)
        self.synth = Synthesis(size, ch, d)
        self.to_codes = EqualLinear(n_tok * d, self.synth.n_codes * d)
        self.style_dim = d

    # motion -------------------------------------------------------------------------------------------------
    def motion(self, x: torch.Tensor) -> torch.Tensor:
        return self.motion_enc(x)[0]

    def _queries(self, b: int) -> torch.Tensor:
        return self.memory.weight.unsqueeze(0).expand(b, -1, -1)

    def canon_src(self, m: torch.Tensor) -> torch.Tensor:
        """Source motion feature ``(B, d)`` -> canonical tokens ``(B, N, d)``."""
        return self.t_src(self._queries(m.shape[0]), m.unsqueeze(1))

    def canon_drv(self, m: torch.Tensor) -> torch.Tensor:
        """Driving motion feature ``(B, d)`` -> canonical tokens ``(B, N, d)``."""
        return self.t_drv(self._queries(m.shape[0]), m.unsqueeze(1))

    # appearance + decoding ----------------------------------------------------------------------------------
    def appearance(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Source feature maps ordered 4 px .. size."""
        return self.app_enc(x)[1]

    def decode(self, q: torch.Tensor, feats: list[torch.Tensor]) -> torch.Tensor:
        """Project canonical tokens back to this domain (cross-attending 4, 16, 64 px source features), map them
        to per-layer codes and synthesise."""
        b = q.shape[0]
        f4, f16, f64 = feats[0], feats[2], self.lateral(feats[4])
        for layer, f in zip(self.back, (f4, f16, f64)):
            q = layer(q, f.flatten(2).transpose(1, 2))
        codes = self.to_codes(q.flatten(1)).view(b, -1, self.style_dim)
        return self.synth(codes, feats[1:])


def _prep(img: torch.Tensor) -> torch.Tensor:
    return img * 2 - 1


def analogy_loss(delta_out: torch.Tensor, delta_drive: torch.Tensor) -> torch.Tensor:
    """Analogy constraint: the canonical motion of the output relative to its source (re-encoded in the source's
    domain) must equal the driving motion that was applied. Mean absolute difference."""
    return (delta_out - delta_drive).abs().mean()


@METHODS.register("toontalker", summary="ToonTalker (ICCV 2023): cross-domain motion alignment, analogy-constrained")
class ToonTalker(Method):
    """Two domain generators (real, cartoon) trained with within-domain reconstruction, then the analogy constraint."""

    name = "toontalker"
    capabilities = Capabilities(trainable=True, cross_domain=True, self_reenactment=True)
    optimizer_slots = {"g": "opt_g", "d": "opt_d"}

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__(cfg)
        from .losses import ReconstructionLoss

        self.gens = nn.ModuleDict({d: DomainGenerator(cfg) for d in DOMAINS})
        lw = dict(cfg.get("loss", {}))
        self.w = {k: float(lw.get(k, 0.0)) for k in ("rec", "analogy", "adv", "r1")}
        self.r1_every = int(lw.get("r1_every", 16))
        self.domain_weight = {d: float(cfg.get("domain_weight", {}).get(d, 1.0)) for d in DOMAINS}
        self.stage1_steps = int(cfg.get("stage1_steps", 0))
        # held outside the module tree: the loss network is not part of the method's checkpoint
        self._rec = [ReconstructionLoss(str(lw.get("reconstruction", "auto")), float(lw.get("ssim", 1.0)),
                                        int(lw.get("scales", 3)))]
        self.cfg["reconstruction_backend"] = self._rec[0].backend
        betas = tuple(float(b) for b in cfg.get("betas", (0.0, 0.99)))
        lr = float(cfg.get("lr", 2e-3))
        self.opt_g = torch.optim.Adam(self.gens.parameters(), lr=lr, betas=betas)
        self.discs: nn.ModuleDict | None = None
        self.opt_d: torch.optim.Optimizer | None = None
        if self.w["adv"] > 0:
            ch = channel_map(self.size, int(cfg["channel_base"]), int(cfg["channel_max"]))
            self.discs = nn.ModuleDict({d: Discriminator(self.size, ch) for d in DOMAINS})
            self.opt_d = torch.optim.Adam(self.discs.parameters(), lr=lr, betas=betas)

    # -- inference --------------------------------------------------------------------------------------------
    def reconstruct(self, source: torch.Tensor, driving: torch.Tensor, domain: Domain) -> torch.Tensor:
        """Within-domain absolute transfer ``q = T_src(src) + T_drv(drv)`` (batched); images in [0, 1]."""
        g = self.gens[domain]
        xs, xd = _prep(source), _prep(driving)
        q = g.canon_src(g.motion(xs)) + g.canon_drv(g.motion(xd))
        return (g.decode(q, g.appearance(xs)) + 1) / 2

    def driving_codes(self, driving: torch.Tensor, domain: Domain) -> torch.Tensor:
        """Canonical driving tokens ``(T, N, d)``, one frame at a time so equal frames give bit-equal tokens."""
        g = self.gens[domain]
        return torch.cat([g.canon_drv(g.motion(_prep(f[None]))) for f in driving])

    @torch.no_grad()
    def animate(self, source: torch.Tensor, driving: torch.Tensor, *, source_domain: Domain,
                driving_domain: Domain, relative: bool = True) -> torch.Tensor:
        """``q = T_src_B(src) + (T_drv_A(drv_t) - T_drv_A(drv_0)) + T_drv_B(src)`` with B = source, A = driving domain
        (``relative=False``: ``q = T_src_B(src) + T_drv_A(drv_t)``)."""
        g = self.gens[source_domain]
        xs = _prep(source[None])
        feats = g.appearance(xs)
        m_src = g.motion(xs)
        drv = self.driving_codes(driving, driving_domain)
        if relative:
            q = g.canon_src(m_src) + (drv - drv[:1]) + g.canon_drv(m_src)
        else:
            q = g.canon_src(m_src) + drv
        chunk = int(self.cfg.get("animate_chunk", 16))
        out = []
        for i in range(0, len(q), chunk):
            qi = q[i:i + chunk]
            out.append(g.decode(qi, [f.expand(len(qi), -1, -1, -1) for f in feats]))
        return ((torch.cat(out) + 1) / 2).clamp(0, 1)

    # -- training ---------------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, dict[str, torch.Tensor]], step: int) -> dict[str, float]:
        self.train()
        stage = 1 if step < self.stage1_steps else 2
        logs: dict[str, float] = {"stage": float(stage)}
        total = torch.zeros((), device=next(self.parameters()).device)
        rec_loss = self._rec[0].to(total.device)
        enc: dict[str, dict[str, Any]] = {}
        fakes: dict[str, list[torch.Tensor]] = {d: [] for d in batch}
        for dom, b in batch.items():
            g = self.gens[dom]
            xs, xd = _prep(b["source"]), _prep(b["driving"])
            m = g.motion(torch.cat([xs, xd]))
            m_s, m_d = m.chunk(2)
            c_src, c_s, c_d = g.canon_src(m_s), g.canon_drv(m_s), g.canon_drv(m_d)
            feats = g.appearance(xs)
            out = g.decode(c_src + c_d, feats)
            rec = rec_loss((out + 1) / 2, b["driving"])
            total = total + self.w["rec"] * self.domain_weight[dom] * rec
            logs[f"rec_{dom}"] = float(rec.detach())
            fakes[dom].append(out)
            enc[dom] = {"c_src": c_src, "c_s": c_s, "c_d": c_d, "feats": feats}
        if stage == 2 and len(enc) == 2 and self.w["analogy"] > 0:
            for a, bdom in (("real", "cartoon"), ("cartoon", "real")):
                loss, out = self._analogy(enc[a], enc[bdom], self.gens[bdom])
                total = total + self.w["analogy"] * loss
                logs[f"analogy_{a}2{bdom}"] = float(loss.detach())
                fakes[bdom].append(out)
        if self.discs is not None:
            adv = sum(self._g_adv(dom, torch.cat(f)) for dom, f in fakes.items())
            total = total + self.w["adv"] * adv
            logs["adv_g"] = float(adv.detach())
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        self.opt_g.step()
        if self.discs is not None:
            logs.update(self._d_step(batch, fakes, step))
        logs["loss"] = float(total.detach())
        return logs

    def _analogy(self, ea: dict[str, Any], eb: dict[str, Any],
                 gb: DomainGenerator) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply domain A's canonical motion (driving minus source frame of A's clip) to B's source, re-encode the
        output with B's encoders, and compare its motion relative to B's source with A's (stop-gradient target)."""
        delta_a = (ea["c_d"] - ea["c_s"]).detach()
        out = gb.decode(eb["c_src"] + delta_a + eb["c_s"], eb["feats"])
        delta_b = gb.canon_drv(gb.motion(out)) - eb["c_s"]
        return analogy_loss(delta_b, delta_a), out

    def _g_adv(self, dom: str, fake: torch.Tensor) -> torch.Tensor:
        from .losses import g_nonsaturating

        assert self.discs is not None
        self.discs.requires_grad_(False)
        return g_nonsaturating(self.discs[dom](fake))

    def _d_step(self, batch: dict[str, dict[str, torch.Tensor]], fakes: dict[str, list[torch.Tensor]],
                step: int) -> dict[str, float]:
        from .losses import d_logistic, r1_penalty

        assert self.discs is not None and self.opt_d is not None
        self.discs.requires_grad_(True)
        device = next(self.discs.parameters()).device
        loss = torch.zeros((), device=device)
        logs: dict[str, float] = {}
        lazy_r1 = self.w["r1"] > 0 and step % self.r1_every == 0
        r1_total = torch.zeros((), device=device)
        for dom, f in fakes.items():
            d = self.discs[dom]
            real = _prep(batch[dom]["driving"]).detach().requires_grad_(lazy_r1)
            real_logits = d(real)
            loss = loss + d_logistic(real_logits, d(torch.cat(f).detach()))
            if lazy_r1:
                r1_total = r1_total + r1_penalty(real_logits, real)
        logs["d_loss"] = float(loss.detach())
        if lazy_r1:
            loss = loss + self.w["r1"] / 2 * self.r1_every * r1_total
            logs["r1"] = float(r1_total.detach())
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        return logs

    # -- official release -------------------------------------------------------------------------------------
    def load_release_checkpoint(self, path: str, trust: bool = False) -> list[str]:
        """Load ``in-domain*.pt(h)`` (``{"gen": ...}``, loaded into both domains) or ``cross-domain.pt(h)``
        (``{"gen": cartoon, "gen_real": real}``) with strict name/shape checking via :data:`RELEASE_PREFIXES` and :data:`RELEASE_PARTS`.

        Returns the release keys not loaded, each as ``"key: reason"``.
        """
        state = _torch_load(path, trust)
        if not isinstance(state, dict) or not isinstance(state.get("gen"), dict):
            raise CheckpointError(f"{path} is not a ToonTalker release checkpoint (no 'gen' state dict)",
                                  hint="pass in-domain*.pth or cross-domain.pth from OpenTalker/ToonTalker")
        targets = {"gen": ["cartoon"], "gen_real": ["real"]} if "gen_real" in state else {"gen": list(DOMAINS)}
        if "gen_real" not in state:
            log.warning("%s holds one generator (in-domain model): loading it into both domains", path)
        skipped = [f"{k}: not a generator (training state), unused at inference" for k in state if k not in targets]
        for top, domains in targets.items():
            for dom in domains:
                skipped += _load_generator(self.gens[dom], state[top], top, f"gens.{dom}", path)
        return sorted(set(skipped))


# --------------------------------------------------------------------------------------------------- release mapping
RELEASE_PREFIXES: tuple[tuple[str, str], ...] = (
    ("enc.", "app_enc."),
    ("enc2.", "motion_enc."),
    ("dec.direction.", "memory."),
    ("dec.transformerlayer_0.", "t_src."),
    ("dec.transformerlayer_1.", "t_drv."),
    ("dec.transformerlayer.", "back.0."),
    ("dec.transformerlayer_t.", "back.1."),
    ("dec.transformerlayer_f.", "back.2."),
    ("dec.latlayer1.", "lateral."),
    ("dec.mlp.", "to_codes."),
    ("dec.input.input", "synth.const"),
    ("dec.", "synth."),
)
"""Release generator key prefix -> ours (relative to a :class:`DomainGenerator`); the first match applies."""

RELEASE_PARTS: tuple[tuple[str, str], ...] = (
    (".multihead_attn.", ".cross_attn."),
    (".linear1.", ".ff1."),
    (".linear2.", ".ff2."),
)
"""Inside the transformer layers: release part name -> ours."""

_NOISE = re.compile(r"\.noise\.weight$")
_KERNEL = re.compile(r"\.kernel$")


def release_to_ours(key: str) -> str:
    """Our parameter name (relative to a :class:`DomainGenerator`) for a release generator key."""
    for old, new in RELEASE_PREFIXES:
        if key.startswith(old):
            key = new + key[len(old):]
            break
    for old, new in RELEASE_PARTS:
        key = key.replace(old, new)
    return key


def _torch_load(path: str, trust: bool) -> Any:
    import pickle
    from pathlib import Path

    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path} holds objects beyond tensors ({str(e).splitlines()[0][:120]})",
                              hint="if you trust its source, pass --trust-checkpoint") from None
    except (RuntimeError, EOFError) as e:
        raise CheckpointError(f"cannot read {path}: {str(e).splitlines()[0][:160]}") from None


def _load_generator(gen: DomainGenerator, release: dict[str, torch.Tensor], top: str, where: str,
                    path: str) -> list[str]:
    """Copy a release generator state dict into ``gen``; returns skipped keys with reasons; raises on mismatch."""
    params = dict(gen.named_parameters())
    buffers = dict(gen.named_buffers())
    skipped: list[str] = []
    problems: list[str] = []
    filled: set[str] = set()
    new_values: dict[str, torch.Tensor] = {}
    for key, value in release.items():
        ours = release_to_ours(key)
        if _NOISE.search(key):
            skipped.append(f"{top}.{key}: noise strength; the release never injects noise, so it has no effect")
            continue
        if _KERNEL.search(key):
            ref = buffers.get(ours)
            if ref is None or ref.shape != value.shape or not torch.allclose(ref, value.float()):
                problems.append(f"{top}.{key}: FIR kernel differs from ours ({where}.{ours})")
            else:
                skipped.append(f"{top}.{key}: constant FIR kernel, equal to ours (not stored)")
            continue
        if ours not in params:
            problems.append(f"{top}.{key}: no parameter {where}.{ours}")
        elif tuple(params[ours].shape) != tuple(value.shape):
            problems.append(f"{top}.{key}: shape {tuple(value.shape)} != {where}.{ours} {tuple(params[ours].shape)}")
        else:
            new_values[ours] = value
            filled.add(ours)
    problems += [f"{where}.{k}: missing from the release" for k in params if k not in filled]
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CheckpointError(f"{path} does not match the ToonTalker architecture: {'; '.join(problems[:3])}{more}",
                              hint="use --profile paper (256 px, style_dim 512, 20 tokens) for released weights")
    with torch.no_grad():
        for k, v in new_values.items():
            params[k].copy_(v.to(params[k].dtype))
    return skipped
