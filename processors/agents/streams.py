"""What the agents need from Faust: byte topics and the concrete stream class.

The app (:mod:`processors.app`) and the agents (:mod:`processors.agents.route`,
:mod:`processors.agents.deliver`) both declare their topics with :func:`raw_topic`; it lives
here, below both, so that the app imports the agents and nothing imports the app.
"""

from __future__ import annotations

import faust

__all__ = ["concrete_stream", "raw_topic"]


def concrete_stream(stream: faust.StreamT[bytes]) -> faust.Stream[bytes]:
    """The stream Faust hands an agent, as its concrete class (``take_events``, ``noack``).

    Raises ``TypeError`` if Faust ever hands over something else.
    """
    if not isinstance(stream, faust.Stream):
        msg = f"expected a faust.Stream, got {type(stream).__name__}"
        raise TypeError(msg)
    return stream


def raw_topic(app: faust.App, name: str) -> faust.TopicT:
    """A topic whose keys and values stay bytes: decoding is the agents' business."""
    return app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        internal=False,
    )
