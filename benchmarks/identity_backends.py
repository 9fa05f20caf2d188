"""Can the identity backends we have reach the validation's cartoon target (same- vs different-identity ROC AUC
>= 0.9) by being combined? Measured on the faces the validation reads (``validate-metrics``: the first 12 clips per
domain, 6 evenly spaced frames each, as a 64-px method output enlarged for analysis):

- each available backend alone (the validation's figure);
- ``+flip``: each face's embedding averaged with its mirror image's (test-time augmentation);
- ``a+b``: the two backends' cosine similarities, each standardised over the domain's face pairs, summed; and the
  same with flips.

    python -m benchmarks.identity_backends [--dataset data/dataset] [--output-size 64] [--out FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np

from benchmarks.common import machine
from toontalker_bench.core.config import load_params
from toontalker_bench.core.errors import AssetError
from toontalker_bench.data.version import dataset_version
from toontalker_bench.eval.validate import _as_output, identity_embeddings, identity_separation, validation_clips
from toontalker_bench.faces.analyzer import FaceAnalyzer
from toontalker_bench.metrics.identity import ID_BACKENDS

RESULTS = Path(__file__).parent / "results" / "identity_backends.json"


def _z(sim: np.ndarray) -> np.ndarray:
    iu = np.triu_indices(len(sim), 1)
    return (sim - sim[iu].mean()) / sim[iu].std()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="data/dataset")
    ap.add_argument("--output-size", type=int, default=64)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    params = load_params()
    clips, source = validation_clips(params, args.dataset, 12, 24)
    clips = [_as_output(c, args.output_size, params.eval.analysis_size) for c in clips]
    mirrored = [dataclasses.replace(c, frames=np.ascontiguousarray(c.frames[:, :, ::-1])) for c in clips]
    analyzer = FaceAnalyzer()
    backends, missing = {}, {}
    for name in ID_BACKENDS.names():
        try:
            backends[name] = ID_BACKENDS.create(name)
        except AssetError as e:
            missing[name] = str(e)
    out: dict[str, dict[str, float | None]] = {}
    for domain in sorted({c.domain for c in clips}):
        emb, ids = {}, None
        for name, b in backends.items():
            v, ids = identity_embeddings(clips, analyzer, b, domain)
            vf, _ = identity_embeddings(mirrored, analyzer, b, domain)
            both = v + vf
            emb[name], emb[f"{name}+flip"] = v, both / np.linalg.norm(both, axis=1, keepdims=True)
        keep = np.all([np.isfinite(v).all(1) for v in emb.values()], axis=0)
        sims = {k: v[keep] @ v[keep].T for k, v in emb.items()}
        for a, b in itertools.combinations(backends, 2):
            for flip in ("", "+flip"):
                sims[f"{a}+{b}{flip}"] = _z(sims[a + flip]) + _z(sims[b + flip])
        assert ids is not None
        out[domain] = {k: (None if "auc" not in (r := identity_separation(s, ids[keep])) else round(r["auc"], 4))
                       for k, s in sims.items()}
        out[domain]["faces"] = int(keep.sum())
    result = {"dataset_version": dataset_version(args.dataset), "source": source, "output_size": args.output_size,
              "what": __doc__.split("\n\n")[0].replace("\n", " "), "auc": out, "unavailable": missing,
              "machine": machine()}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
