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


_CASE_STATUS = {"status": "the case's status now (open, in_progress, waiting, resolved, closed)"}
_SLA = {"target": "the promise: first_response or resolution", "due_at": "when it falls due (ISO 8601)",
        "customer_id": "the case's customer", "agent": "the case's owner then, or null"}
_FINISHED = {"outcome": "what came of it, in words (may be empty)", "owner": "its owner's id, or null"}
_LINK = "the id of the {} it is about (only when it names one)"

_MOVED = {"customers": "ids of the customers (at most 1,000 per event; a large move is split)",
          "at": "the instant the segment was evaluated as of (ISO 8601)",
          "version": "the version of the segment's rule"}

TOPICS: tuple[Topic, ...] = (
    *_aggregate_topics(),
    Topic("customer.merged", "the surviving customer's id",
          "two customers are merged into one (crm.lifecycle.merge)",
          {"merged_id": "the id of the customer merged away", "merge_id": "the merge journal's id"}),
    Topic("customer.unmerged", "the surviving customer's id", "a merge is undone (crm.lifecycle.unmerge)",
          {"merged_id": "the id of the customer restored", "merge_id": "the merge journal's id"}),
    Topic("person.erased", "the tombstone's id (never the person's)",
          "everything about a person is erased (crm.lifecycle.erase_person)"),
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
          {"stage": "the new stage", "pipeline": "the id of the pipeline it moves in"}),
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
    Topic("account.added", "the account's id", "an account (an organisation or a household) is added",
          {"kind": "organisation or household", "parent_id": "the id of the account above it, or null"}),
    Topic("account.updated", "the account's id", "an account is changed (its members too)",
          {"version": "the version now stored"}),
    Topic("assignment.made", "the id of the case, customer, account or opportunity given an owner",
          "an assignment rule (or a `crmcore_assign` plugin) chooses an owner",
          {"kind": "what was assigned: case, customer, account or opportunity",
           "agent": "the chosen agent's id", "team": "the team it was chosen in, or null",
           "rule": "the rule that chose (least_loaded, round_robin, or a plugin's)",
           "reason": "why, in words a supervisor can read",
           "customer_id": "the customer concerned, or null (an account)"}),
    Topic("automation.ran", "the rule's name",
          "an automation rule has run on an event (loops and failures are only logged)",
          {"event_id": "the id of the event that triggered it",
           "outcome": "done (its actions ran) or skipped (its condition did not hold)"}),
    Topic("campaign.launched", "the campaign's id", "a campaign's audience is frozen and its holdout drawn",
          {"at": "the instant the audience was selected as of (ISO 8601)",
           "target": "how many members will be sent to", "control": "how many are held out",
           "strata": "stratum -> [target, control] counts", "seed": "the seed the holdout was drawn with",
           "control_fraction": "the share of each stratum held out"}),
    Topic("campaign.joined", "the campaign's id", "a customer joins a launched campaign",
          {"customer": "the customer's id", "group": "target or control, drawn for them alone",
           "stratum": "their stratum"}),
    Topic("campaign.member_skipped", "the campaign's id", "a member is not eligible at send time",
          {"customer_id": "the member's customer id", "group": "target or control",
           "reason": "why not (no consent, frequency cap, ...)"}),
    Topic("campaign.sent", "the campaign's id", "a page of sends is recorded (one event a page)",
          {"channel": "the channel sent on", "customers": "ids of the customers sent to",
           "references": "each send's reference (Message-ID or letter reference), in the same order"}),
    Topic("campaign.member_failed", "the campaign's id",
          "a member's message could not be composed or delivered (or a killed run left it unknown)",
          {"customer_id": "the member's customer id", "reason": "the error (at most 500 characters)"}),
    Topic("campaign.responded", "the campaign's id", "a member's first response is recorded",
          {"customer_id": "the member's customer id", "kind": "clicked, replied or unsubscribed",
           "link": "the name of the link clicked (only on a click recorded by the tracker)",
           "at": "when they responded (ISO 8601)"},
          open_payload=True),
    Topic("campaign.converted", "the campaign's id",
          "a member's first purchase credited to the campaign (last touch) is found",
          {"customer_id": "the member's customer id", "purchases": "ids of the credited purchases",
           "revenue": "their total as decimal text", "currency": "ISO 4217 code",
           "at": "when the first of them was ordered (ISO 8601)"}),
    Topic("campaign.closed", "the campaign's id", "a campaign is closed after its last analysis",
          {"at": "when it was closed (ISO 8601)", "target": "target members", "control": "control members",
           "conversion_lift": "target's conversion rate minus control's",
           "conversion_p": "the p-value of that lift",
           "incremental_revenue": "the revenue it added (estimate) as decimal text",
           "currency": "ISO 4217 code"}),
    Topic("case.opened", "the case's id", "a case is opened, with its service-level promises",
          {"customer_id": "the customer's id", "tier": "the customer's tier, or null",
           "priority": "1 (low) to 4 (urgent)",
           "first_response_due": "when the first answer is due (ISO 8601), if promised",
           "resolution_due": "when the resolution is due (ISO 8601), if promised"}),
    Topic("case.assigned", "the case's id", "a case is given an owner",
          {"agent": "the owner's id", "team": "the case's team now, or null",
           "rule": "the rule that chose the owner", "reason": "why, in words"}),
    Topic("case.responded", "the case's id", "the first answer to a case went out", _CASE_STATUS),
    Topic("case.paused", "the case's id", "a case waits on the customer (its clock stops)", _CASE_STATUS),
    Topic("case.resumed", "the case's id", "the customer answered (the clock runs again, deadlines moved)",
          _CASE_STATUS),
    Topic("case.resolved", "the case's id", "a case is resolved", _CASE_STATUS),
    Topic("case.closed", "the case's id", "a case is closed", _CASE_STATUS),
    Topic("case.reopened", "the case's id", "a resolved case is reopened (its resolution promise runs again)",
          _CASE_STATUS),
    Topic("case.merged", "the surviving case's id", "a duplicate case is folded into another",
          {"duplicate": "the duplicate's id (now closed)", "at": "when they were merged (ISO 8601)"}),
    Topic("case.sla_warning", "the case's id", "a sweep finds a promise about to fall due", _SLA),
    Topic("case.sla_breached", "the case's id", "a sweep finds a promise broken", _SLA),
    Topic("case.escalated", "the case's id",
          "a breach raises a case's escalation level (and may hand it to its team's lead)",
          {"level": "the escalation level now", "target": "the promise broken",
           "agent": "the owner now (the team lead when handed over), or null",
           "previous_agent": "the owner before, or null", "team": "the case's team, or null",
           "rule": "always escalation", "reason": "which promise broke, when, and who took over"}),
    Topic("lead.captured", "the lead's id", "a lead is captured", {"source": "where it came from, or null"}),
    Topic("lead.qualified", "the lead's id", "a new lead is judged worth pursuing, or not",
          {"status": "qualified or disqualified"}),
    Topic("lead.converted", "the lead's id", "a qualified lead becomes a customer and an opportunity",
          {"customer_id": "the customer (the one with its e-mail, or a new prospect)",
           "opportunity_id": "the opportunity opened"}),
    Topic("pipeline.added", "the pipeline's id", "a sales pipeline is stored"),
    Topic("pipeline.updated", "the pipeline's id", "a sales pipeline is changed",
          {"version": "the version now stored"}),
    Topic("product.added", "the product's id (the code order lines carry)",
          "a product is added to the catalogue"),
    Topic("quote.drafted", "the quote's id", "a quote, or a new revision of one, is priced and stored",
          {"opportunity_id": "the opportunity it quotes for", "revision": "1, then one more per revision",
           "total": "its total with tax as decimal text", "currency": "ISO 4217 code"}),
    Topic("quote.sent", "the quote's id", "a quote is marked sent to the customer"),
    Topic("quote.rejected", "the quote's id", "the customer turns a quote down"),
    Topic("quote.accepted", "the quote's id",
          "the customer accepts a quote: its opportunity is won and the purchase recorded",
          {"opportunity_id": "the opportunity won", "purchase_id": "the purchase recorded"}),
    Topic("task.created", "the task's id", "a task is created",
          {"owner": "its owner's id, or null", "title": "what is to be done",
           **{f"{what}_id": _LINK.format(what) for what in ("customer", "account", "case", "opportunity")}}),
    Topic("task.reassigned", "the task's id", "a task is given to another owner",
          {"owner": "the new owner's id"}),
    Topic("task.done", "the task's id", "a task is completed", _FINISHED),
    Topic("task.cancelled", "the task's id", "a task is cancelled", _FINISHED),
    Topic("task.reminder", "the task's id", "a task's reminder time has come (once per task)",
          {"owner": "its owner's id, or null", "title": "what is to be done",
           "due_at": "when it is due (ISO 8601), or null"}),
)

BY_NAME: Mapping[str, Topic] = {topic.name: topic for topic in TOPICS}
