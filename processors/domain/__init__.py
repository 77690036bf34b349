"""Queast domain events as they arrive on ``queast.domain-events``.

The models are in :mod:`processors.domain.events`; import them from there (this package
re-exports nothing, so each name has one home).
"""
