"""Channels and the two families they belong to."""

from __future__ import annotations

from crmcore import values as v


class ChannelFamily(v.Choice):
    __field__ = "family"

    OPERATIONAL = "operational"
    """Staff in contact with the customer."""
    COLLABORATIVE = "collaborative"
    """The customer serves themself, with no staff in the loop."""


class Channel(v.Choice):
    VISIT = "visit"
    PHONE = "phone"
    LETTER = "letter"
    EMAIL = "email"
    VIDEO = "video"
    CHAT = "chat"
    PORTAL = "portal"
    KIOSK = "kiosk"
    APP = "app"
    IVR = "ivr"

    @property
    def family(self) -> ChannelFamily:
        return _FAMILIES[self]


_FAMILIES = {
    channel: ChannelFamily.COLLABORATIVE
    if channel in {"portal", "kiosk", "app", "ivr"}
    else ChannelFamily.OPERATIONAL
    for channel in Channel
}


class Direction(v.Choice):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
