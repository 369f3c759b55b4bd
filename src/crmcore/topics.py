"""Every event topic crmcore writes to the outbox, with what `aggregate_id` names and
what the payload holds: the catalogue subscribers (`crmcore_on_event`) are written
against. docs/events.md is rendered from it, and a test fails when code emits a topic
(or a payload key) that is not here.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs


@attrs.frozen
class Topic:
    name: str
    aggregate: str
    """What the event's `aggregate_id` is."""
    when: str
    payload: Mapping[str, str] = attrs.field(factory=dict)
    """Payload key -> its meaning (values are JSON: texts, numbers, lists, null)."""
    open_payload: bool = False
    """More keys may follow (e.g. a scorer's explanation)."""


AGGREGATES = ("customer", "case", "opportunity", "campaign", "service_point", "agent", "team")
"""Aggregates whose repository emits `<name>.added`, `.updated` and `.removed`."""


def _aggregate_topics() -> list[Topic]:
    found = []
    for name in AGGREGATES:
        noun = name.replace("_", " ")
        one = f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"
        found += [
            Topic(f"{name}.added", f"the {noun}'s id", f"{one} is added"),
            Topic(f"{name}.updated", f"the {noun}'s id", f"{one} is changed",
                  {"version": "the version now stored"}),
            Topic(f"{name}.removed", f"the {noun}'s id", f"{one} is removed"),
        ]
    return found


_MOVED = {"customers": "ids of the customers (at most 1,000 per event; a large move is split)",
          "at": "the instant the segment was evaluated as of (ISO 8601)",
          "version": "the version of the segment's rule"}

TOPICS: tuple[Topic, ...] = (
    *_aggregate_topics(),
    Topic("consent.changed", "the customer's id", "a customer grants or withdraws a consent",
          {"purpose": "what the consent is for", "channel": "the channel it covers",
           "status": "granted or withdrawn", "source": "who or what recorded it"}),
    Topic("interaction.logged", "the customer's id", "a contact is put on a customer's timeline",
          {"interaction_id": "the interaction's id", "channel": "its channel",
           "family": "operational, collaborative or analytical"}),
    Topic("purchase.recorded", "the customer's id", "an order is recorded",
          {"purchase_id": "the purchase's id", "total": "its total as decimal text",
           "currency": "ISO 4217 code"}),
    Topic("opportunity.stage_changed", "the opportunity's id", "an opportunity moves in its sales cycle",
          {"stage": "the new stage"}),
    Topic("segment.saved", "the segment's id", "a segment rule is saved (new or changed)",
          {"version": "the version now stored"}),
    Topic("segment.entered", "the segment's id", "a segment run finds new members", _MOVED),
    Topic("segment.left", "the segment's id", "a segment run finds members gone", _MOVED),
    Topic("segment.ran", "the segment's id", "a segment is run",
          {"version": "the rule's version", "size": "members now", "entered": "how many entered",
           "left": "how many left", "at": "the instant it was evaluated as of (ISO 8601)"}),
    Topic("email.refused", "the customer's id", "a message is not sent for want of consent",
          {"purpose": "the message's purpose", "template": "the template's name",
           "reason": "why it was refused"}),
    Topic("email.failed", "the customer's id", "a message could not be delivered after its retries",
          {"purpose": "the message's purpose", "template": "the template's name",
           "message_id": "its Message-ID", "reason": "the last error", "attempts": "how many tries"}),
    Topic("email.bounced", "the customer's id", "a delivery report says an address bounced",
          {"address": "the address that bounced", "status": "the DSN status (5.1.1, ...)",
           "withdrawn": "purposes whose e-mail consent was withdrawn",
           "message_id": "the report's own Message-ID (the same on every read)"}),
    Topic("email.parked", "the mailbox's name", "an inbound message cannot be matched or read",
          {"uid": "its IMAP UID", "uidvalidity": "the mailbox's UIDVALIDITY", "size": "bytes",
           "truncated": "only its header was read", "reason": "why it was parked",
           "sender": "From (cleaned)", "subject": "Subject (cleaned)",
           "message_id": "Message-ID (cleaned)"}),
    Topic("call.unidentified", "the call's id", "a finished call matches no single customer",
          {"direction": "inbound or outbound", "peer": "the other party as the phone names it",
           "number": "the E.164 number read from it, if any", "reason": "why no customer was chosen",
           "candidates": "ids of the customers sharing the number", "outcome": "how the call ended",
           "started_at": "ISO 8601", "ended_at": "ISO 8601", "answered_at": "ISO 8601 or null",
           "agent": "the agent's id or null", "service_point": "where the call was taken, or null",
           "cause": "the phone's own words on why it ended"}),
    Topic("churn.alert", "the customer's id", "a valuable customer's P(alive) falls under the threshold",
          {"as_of": "the instant scored (ISO 8601)", "threshold": "the threshold crossed",
           "p_alive": "probability the customer is still active", "value": "their expected value",
           "since_last": "time since their last purchase"},
          open_payload=True),
)

BY_NAME: Mapping[str, Topic] = {topic.name: topic for topic in TOPICS}
