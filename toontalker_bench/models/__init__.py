"""Reenactment methods: the :class:`~toontalker_bench.models.base.Method` interface and the method registry."""
