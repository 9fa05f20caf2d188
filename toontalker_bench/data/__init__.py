"""Dataset construction: synth (demo corpus), scrape, shots, faces, align, build."""
