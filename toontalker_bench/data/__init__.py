"""Dataset construction: synth (demo corpus), scrape, tubes (shot cuts + face tubes), align, build; the list is
:data:`toontalker_bench.data.stages.STAGES`."""
