"""Face analysis shared by the data stages, the metrics and the methods: detectors, landmark models, the face
analyzer for aligned crops, the BFM fit (head rotation + expression) and the 20-D pose vector.

This package imports only the core modules and :mod:`toontalker_bench.assets`; data, metrics and models import it.
"""
