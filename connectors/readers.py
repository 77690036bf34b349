"""The partner company readers, by connector name: what the inbound side may build.

The inbound agent reads a highlighted partner object (when the partner's event carries only
its id) with the connection's :class:`~connectors.base.inbound.PartnerCompanyReader`. It finds
the connector's reader builder here rather than in :mod:`connectors.registry`, because the
registry imports every connector's sink and exporters, and the inbound side must reach no code
that writes to a partner or maps a Signal (``tests/unit/inbound/test_never_a_signal.py``). This
module imports the connectors' ``reader`` modules only.

A connector whose partner can be read for inbound highlights adds its ``reader.reader_for``
to :data:`READERS`; a connector without one has its id-only highlights wait for review.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from connectors.base.inbound import PartnerCompanyReader
from connectors.base.partner_read import ReaderSetup
from connectors.hubspot.reader import reader_for as hubspot_reader_for
from connectors.pipedrive.reader import reader_for as pipedrive_reader_for

__all__ = ["READERS", "ReaderFor", "reader_builder"]

ReaderFor = Callable[[Mapping[str, Any], ReaderSetup], PartnerCompanyReader | None]
"""Builds a connection's reader from its partner settings (``None``: it cannot be read)."""

READERS: Mapping[str, ReaderFor] = MappingProxyType(
    {"hubspot": hubspot_reader_for, "pipedrive": pipedrive_reader_for}
)


def reader_builder(connector: str) -> ReaderFor | None:
    """The reader builder of ``connector``, or ``None`` when it has none."""
    return READERS.get(connector)
