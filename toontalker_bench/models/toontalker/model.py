"""ToonTalker (Gong et al., ICCV 2023): cross-domain face reenactment by motion alignment in a canonical space.

One :class:`DomainGenerator` per domain (``real``, ``cartoon``), each a LIA-style latent animator whose motion path is
replaced by ToonTalker's query transformers. See ``docs/toontalker.md`` for the diagram, the losses and every
departure from the paper and the public release.

Within one generator, images are in [-1, 1] (the release's convention, so released weights work unchanged);
:class:`ToonTalker` converts from and to the toolkit's [0, 1].
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...core.domains import DOMAINS, Domain
from ...core.errors import ConfigError
from ..base import METHODS, Capabilities, Method
from .blocks import Discriminator, channel_map, random_affine
from .networks import FUSION_MODES, DomainGenerator, choice
from .release import load_release

CROSS_DOMAIN_TRANSFORMERS = ("own", "release")
"""``cross_domain_transformer`` config values: which query transformers (``t_src``, ``t_drv``) map motion features
to the canonical space when :meth:`ToonTalker.animate` crosses domains.

- ``own``: each image through its own domain's memory queries, motion encoder and transformers (the paper's model).
- ``release``: as the release's cross-domain demo: cartoon images keep the cartoon motion encoder and memory
  queries but go through the *real* generator's ``t_src`` / ``t_drv``. Within one domain, and in training, every
  domain always uses its own.
"""


def _prep(img: torch.Tensor) -> torch.Tensor:
    return img * 2 - 1


def analogy_loss(delta_out: torch.Tensor, delta_drive: torch.Tensor) -> torch.Tensor:
    """Analogy constraint: the canonical motion of the output relative to its source (re-encoded in the source's
    domain) must equal the driving motion that was applied. Mean absolute difference."""
    return (delta_out - delta_drive).abs().mean()


def _stage1_steps(cfg: dict[str, Any]) -> int:
    """Steps of stage 1 (within-domain reconstruction; the analogy constraint joins afterwards): ``stage1_fraction``
    of ``train.steps``, so every run, however short (``make demo``'s 150 steps), trains both stages; a config without
    a fraction (a run saved before there was one) keeps its absolute ``stage1_steps``."""
    if "stage1_fraction" not in cfg:
        return int(cfg.get("stage1_steps", 0))
    frac = float(cfg["stage1_fraction"])
    if not 0 <= frac < 1:
        raise ConfigError(f"toontalker stage1_fraction must be in [0, 1), got {frac}",
                          hint="e.g. --set stage1_fraction=0.25 (a quarter of train.steps, then stage 2)")
    return int(round(frac * int(dict(cfg.get("train") or {}).get("steps", 0))))


@METHODS.register("toontalker", summary="ToonTalker (ICCV 2023): cross-domain motion alignment, analogy-constrained")
class ToonTalker(Method):
    """Two domain generators (real, cartoon) trained with within-domain reconstruction, then the analogy constraint."""

    name = "toontalker"
    capabilities = Capabilities(trainable=True, cross_domain=True, self_reenactment=True)
    optimizer_slots = {"g": "opt_g", "d": "opt_d"}

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__(cfg)
        from ..losses import ReconstructionLoss

        # both modes are part of the saved run config and checkpoint metadata (absent keys: today's defaults)
        self.fusion = self.cfg["fusion"] = choice(cfg, "fusion", FUSION_MODES, "corrected")
        self.cross_domain_transformer = self.cfg["cross_domain_transformer"] = choice(
            cfg, "cross_domain_transformer", CROSS_DOMAIN_TRANSFORMERS, "own")
        self.gens = nn.ModuleDict({d: DomainGenerator(self.cfg) for d in DOMAINS})
        lw = dict(cfg.get("loss", {}))
        self.w = {k: float(lw.get(k, 0.0)) for k in ("rec", "analogy", "adv", "r1")}
        self.r1_every = int(lw.get("r1_every", 16))
        self.domain_weight = {d: float(cfg.get("domain_weight", {}).get(d, 1.0)) for d in DOMAINS}
        self.stage1_steps = self.cfg["stage1_steps"] = _stage1_steps(cfg)
        self.synthetic = {"p": 0.0, "rotation_deg": 15.0, "scale": 0.1, "shift": 0.1,
                          **{k: float(v) for k, v in dict(cfg.get("synthetic_pairs") or {}).items()}}
        if set(self.synthetic) != {"p", "rotation_deg", "scale", "shift"} or not 0 <= self.synthetic["p"] <= 1:
            raise ConfigError(f"toontalker synthetic_pairs must hold p in [0, 1], rotation_deg, scale, shift; got "
                              f"{cfg.get('synthetic_pairs')!r}")
        # held outside the module tree: the loss network is not part of the method's checkpoint
        self._rec = [ReconstructionLoss(str(lw.get("reconstruction", "auto")), float(lw.get("ssim", 1.0)),
                                        int(lw.get("scales", 3)), perceptual=lw.get("perceptual"))]
        self.cfg["reconstruction_backend"] = self._rec[0].backend
        paper_w = self._rec[0].term_weights  # the paper's weights while the VGG loss runs (empty otherwise)
        if set(paper_w) - set(self.w):
            raise ConfigError(f"unknown loss.perceptual.weights {sorted(set(paper_w) - set(self.w))} for toontalker",
                              hint=f"known: {', '.join(self.w)}")
        self.w.update(paper_w)
        self.cfg["loss_weights_used"] = dict(self.w)
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

    def driving_codes(self, driving: torch.Tensor, domain: Domain,
                      via: DomainGenerator | None = None) -> torch.Tensor:
        """Canonical driving tokens ``(T, N, d)``, one frame at a time so equal frames give bit-equal tokens."""
        g = self.gens[domain]
        return torch.cat([g.canon_drv(g.motion(_prep(f[None])), via) for f in driving])

    def _canonical_via(self, source_domain: Domain, driving_domain: Domain) -> DomainGenerator | None:
        """Whose query transformers canonicalise motion in :meth:`animate` (None: each domain's own)."""
        if source_domain != driving_domain and self.cross_domain_transformer == "release":
            return self.gens["real"]  # type: ignore[return-value]
        return None

    @torch.no_grad()
    def animate(self, source: torch.Tensor, driving: torch.Tensor, *, source_domain: Domain,
                driving_domain: Domain, relative: bool = True) -> torch.Tensor:
        """``q = T_src_B(src) + (T_drv_A(drv_t) - T_drv_A(drv_0)) + T_drv_B(src)`` with B = source, A = driving domain
        (``relative=False``: ``q = T_src_B(src) + T_drv_A(drv_t)``); see :meth:`animate_raw`."""
        out = self.animate_raw(source, driving, source_domain=source_domain, driving_domain=driving_domain,
                               relative=relative)
        return ((out + 1) / 2).clamp(0, 1)

    @torch.no_grad()
    def animate_raw(self, source: torch.Tensor, driving: torch.Tensor, *, source_domain: Domain,
                    driving_domain: Domain, relative: bool = True) -> torch.Tensor:
        """:meth:`animate` before the toolkit's mapping: the generator's own output, nominally in [-1, 1], unclamped
        (what the release returns). Across domains, ``cross_domain_transformer`` picks the query transformers."""
        g = self.gens[source_domain]
        via = self._canonical_via(source_domain, driving_domain)
        xs = _prep(source[None])
        feats = g.appearance(xs)
        m_src = g.motion(xs)
        drv = self.driving_codes(driving, driving_domain, via)
        if relative:
            q = g.canon_src(m_src, via) + (drv - drv[:1]) + g.canon_drv(m_src, via)
        else:
            q = g.canon_src(m_src, via) + drv
        chunk = int(self.cfg.get("animate_chunk", 16))
        out = []
        for i in range(0, len(q), chunk):
            qi = q[i:i + chunk]
            out.append(g.decode(qi, [f.expand(len(qi), -1, -1, -1) for f in feats]))
        return torch.cat(out)

    @torch.no_grad()
    def motion_trace(self, source: torch.Tensor, driving: torch.Tensor, domain: Domain) -> dict[str, float]:
        """Within one domain, the driving frames' change against the source itself as driver, stage by stage:
        ``feature`` (motion encoder), ``tokens`` (canonical driving tokens), ``codes`` (the decoder's per-layer
        codes), each as mean |change| / mean |value|; ``output`` = mean |image change| / mean |driver's change|
        (``evaluate diagnose``'s ``response``, on the absolute transfer used in training; NaN when the driving frames
        equal the source)."""
        g = self.gens[domain]
        xs, xd = _prep(source[None]), _prep(driving)
        m_s, m_d = g.motion(torch.cat([xs, xd])).split([1, len(xd)])
        feats = [f.expand(len(xd), -1, -1, -1) for f in g.appearance(xs)]
        c_src = g.canon_src(m_s).expand(len(xd), -1, -1)
        t_s, t_d = g.canon_drv(torch.cat([m_s, m_d])).split([1, len(xd)])
        t_s = t_s.expand_as(t_d)
        k_s, k_d = g.codes(c_src + t_s, feats), g.codes(c_src + t_d, feats)
        o_s, o_d = g.synth(k_s, feats[1:]), g.synth(k_d, feats[1:])
        driver = float((xd - xs).abs().mean())

        def rel(d: torch.Tensor, s: torch.Tensor) -> float:
            return float((d - s).abs().mean() / s.abs().mean().clamp_min(1e-12))

        return {"feature": rel(m_d, m_s.expand_as(m_d)), "tokens": rel(t_d, t_s), "codes": rel(k_d, k_s),
                "output": float((o_d - o_s).abs().mean()) / driver if driver > 0 else float("nan")}

    def variant(self) -> str:
        parts = [f"fusion={self.fusion}"]
        if self.cross_domain_transformer != "own":
            parts.append(f"cross={self.cross_domain_transformer}")
        parts += self.training_aids()
        return "; ".join([*parts, super().variant()]).strip("; ")

    def training_aids(self) -> list[str]:
        """The departures from the paper's model this configuration uses (see the profile), as variant tags."""
        aids = []
        if self.cfg.get("transformer_norm", "post") == "pre":
            aids.append("pre-norm")
        if self.cfg.get("memory_init_std") is not None:
            aids.append(f"memory_std={float(self.cfg['memory_init_std']):g}")
        if self.cfg.get("token_skip", False):
            aids.append("token-skip")
        if self.synthetic["p"] > 0:
            aids.append(f"synthetic={self.synthetic['p']:g}")
        return aids

    # -- training ---------------------------------------------------------------------------------------------
    def stage_steps(self, steps: int) -> dict[str, int]:
        """Stage 1 (within-domain reconstruction) then stage 2 (+ the analogy constraint), as :meth:`training_step`
        switches at ``stage1_steps``."""
        return {"1_reconstruction": min(steps, self.stage1_steps), "2_analogy": max(0, steps - self.stage1_steps)}

    def training_step(self, batch: dict[str, dict[str, torch.Tensor]], step: int) -> dict[str, float]:
        self.train()
        stage = 1 if step < self.stage1_steps else 2
        logs: dict[str, float] = {"stage": float(stage)}
        total = torch.zeros((), device=next(self.parameters()).device)
        rec_loss = self._rec[0].to(total.device)
        enc: dict[str, dict[str, Any]] = {}
        fakes: dict[str, list[torch.Tensor]] = {d: [] for d in batch}
        targets: dict[str, torch.Tensor] = {}
        for dom, b in batch.items():
            g = self.gens[dom]
            driving = self._driving(b)
            xs, xd = _prep(b["source"]), _prep(driving)
            m = g.motion(torch.cat([xs, xd]))
            m_s, m_d = m.chunk(2)
            c_src, c_s, c_d = g.canon_src(m_s), g.canon_drv(m_s), g.canon_drv(m_d)
            feats = g.appearance(xs)
            out = g.decode(c_src + c_d, feats)
            targets[dom] = driving
            fakes[dom].append(out)
            enc[dom] = {"c_src": c_src, "c_s": c_s, "c_d": c_d, "feats": feats}
        # both domains' reconstructions in one batched VGG pass, each domain's loss averaged over its own pairs
        recs = rec_loss.losses([(fakes[d][0] + 1) / 2 for d in targets], list(targets.values()))
        for dom, rec in zip(targets, recs):
            total = total + self.w["rec"] * self.domain_weight[dom] * rec
            logs[f"rec_{dom}"] = float(rec.detach())
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

    def _driving(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        """The pairs' driving frames, each replaced with probability ``synthetic_pairs.p`` by its own source under a
        random similarity warp: a large, exactly known motion to learn from, where a clip's own frames hold little
        (torch's generator, re-seeded by the trainer every step, draws which pairs and which warps)."""
        p = self.synthetic["p"]
        if p <= 0:
            return b["driving"]
        pick = torch.rand(len(b["source"]), device=b["source"].device) < p
        if not bool(pick.any()):
            return b["driving"]
        driving = b["driving"].clone()
        driving[pick] = random_affine(b["source"][pick], self.synthetic["rotation_deg"], self.synthetic["scale"],
                                      self.synthetic["shift"]).to(driving.dtype)
        return driving

    def _analogy(self, ea: dict[str, Any], eb: dict[str, Any],
                 gb: DomainGenerator) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply domain A's canonical motion (driving minus source frame of A's clip) to B's source, re-encode the
        output with B's encoders, and compare its motion relative to B's source with A's (stop-gradient target)."""
        delta_a = (ea["c_d"] - ea["c_s"]).detach()
        out = gb.decode(eb["c_src"] + delta_a + eb["c_s"], eb["feats"])
        delta_b = gb.canon_drv(gb.motion(out)) - eb["c_s"]
        return analogy_loss(delta_b, delta_a), out

    def _g_adv(self, dom: str, fake: torch.Tensor) -> torch.Tensor:
        from ..losses import g_nonsaturating

        assert self.discs is not None
        self.discs.requires_grad_(False)
        return g_nonsaturating(self.discs[dom](fake))

    def _d_step(self, batch: dict[str, dict[str, torch.Tensor]], fakes: dict[str, list[torch.Tensor]],
                step: int) -> dict[str, float]:
        from ..losses import d_logistic, r1_penalty

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
        """Load the official release's generators (see :func:`.release.load_release`). Requires ``fusion: release``
        (released weights were trained with the release's decoder)."""
        self._require_release_fusion(path)
        return load_release(self.gens, path, trust, warn_cross=self.cross_domain_transformer != "release")

    def load_release_state(self, state: Any, path: str = "<state>") -> list[str]:
        """:meth:`load_release_checkpoint` on an already-loaded checkpoint object (``path`` names it in messages)."""
        from .release import load_release_generators

        self._require_release_fusion(path)
        return load_release_generators(self.gens, state, path, warn_cross=self.cross_domain_transformer != "release")

    def _require_release_fusion(self, where: str) -> None:
        from ...core.errors import CheckpointError

        if self.fusion != "release":
            raise CheckpointError(
                f"{where}: released ToonTalker weights need fusion: release (the decoder they were trained with), "
                f"but this config has fusion: {self.fusion}", hint="use --profile paper, or --set fusion=release")
