"""What a built dataset records so that the oracle (:mod:`.oracle`) can re-draw its demo clips."""

from __future__ import annotations

from typing import Any

RECIPE = "protocol/renderer.json"  # relative to the built dataset


def recipe(params: Any) -> dict[str, Any]:  # noqa: ANN401 - Params or a stage's view of it
    """The seed, the synth params, and the crop size and padding of the align stage."""
    from ...core.config import to_dict

    return {"seed": params.seed, "synth": to_dict(params.synth),
            "align": {"size": params.align.size, "pad": params.align.pad}}
