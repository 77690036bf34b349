"""Faust agents: thin loops that decode, call a service and route the outcome."""
