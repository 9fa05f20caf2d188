"""The leaderboard: CSV rows with provenance (:mod:`.store`, :mod:`.provenance`), rendered pages (:mod:`.render`),
and publishing a run (:mod:`.publish`)."""
