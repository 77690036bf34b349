"""What the agents need from Faust's concrete stream class."""

from __future__ import annotations

import faust

__all__ = ["concrete_stream"]


def concrete_stream(stream: faust.StreamT[bytes]) -> faust.Stream[bytes]:
    """The stream Faust hands an agent, as its concrete class (``take_events``, ``noack``).

    Raises ``TypeError`` if Faust ever hands over something else.
    """
    if not isinstance(stream, faust.Stream):
        msg = f"expected a faust.Stream, got {type(stream).__name__}"
        raise TypeError(msg)
    return stream
