"""Operators' tools: re-delivering, backfilling, inspecting and repairing deliveries.

Each tool is a service module (what it does, callable from the API and from tests) plus, where
an operator runs it from a shell, a command module registered in :mod:`.commands`.
"""
