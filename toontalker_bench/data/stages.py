"""The dataset pipeline's stages, in the order ``dvc repro`` runs them: the one list the CLI verbs, the tests and
the dataset's recipe hash read. A stage module has ``READS`` (the params keys it reads) and
``run(params, executor=None)``."""

from __future__ import annotations

from typing import NamedTuple


class StageInfo(NamedTuple):
    name: str  # the `toontalker-bench data <name>` verb, the dvc.yaml stage and its params section
    module: str  # the module whose ``run(params)`` the verb calls
    summary: str  # the verb's help line


STAGES: tuple[StageInfo, ...] = (
    StageInfo("synth", "toontalker_bench.data.synth.stage", "Generate the built-in demo corpus."),
    StageInfo("scrape", "toontalker_bench.data.scrape", "Download/copy every manifest source into data/raw."),
    StageInfo("tubes", "toontalker_bench.data.tubes.stage",
              "Find shot cuts, then detect, track and filter face tubes in every shot, in one decode (data/tubes/)."),
    StageInfo("align", "toontalker_bench.data.align", "Cut square, aligned 256 px clips out of the face tubes "
                                                      "(data/clips/)."),
    StageInfo("build", "toontalker_bench.data.build", "Split, package and document the dataset (data/dataset/)."),
)
