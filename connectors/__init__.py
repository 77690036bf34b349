"""Partner connectors: a self-contained plugin library behind one sink interface.

``connectors.base`` is the interface, ``connectors.<partner>`` the implementations and
``connectors.registry`` the explicit list of them. Nothing here imports ``processors``.
"""
