"""Real local stand-ins for external services, started by tests and the local demo.

Each sandbox module (``hubspot``, ``pipedrive``, ``webhook_receiver``) holds one partner's
behaviour: an in-memory state, its Starlette app and its ``python -m`` entry point. How they
are served (uvicorn on loopback, in a daemon thread or the foreground) is ``_server``.
"""
