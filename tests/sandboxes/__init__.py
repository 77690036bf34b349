"""Real local stand-ins for external services, started by tests and the local demo."""
