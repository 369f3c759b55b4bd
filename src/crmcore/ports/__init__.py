"""The ports: what the core asks of the outside world, as typing Protocols.

Adapters implement these; the core never imports an adapter. One module a port:
`storage`, `email`, `telephony`.
"""

from crmcore.ports.email import (
    Batch,
    Cursor,
    CursorStore,
    DeliveryError,
    EmailTransport,
    Mailbox,
    MailboxError,
    Received,
)
from crmcore.ports.storage import (
    CampaignMembers,
    CustomerLog,
    CustomerOwned,
    CustomerRepository,
    Outbox,
    Repository,
    Scores,
    SegmentMembers,
    SqlUnitOfWork,
    Storage,
    StorageFactory,
    UnitOfWork,
    sql_dialect,
)
from crmcore.ports.telephony import (
    CallEvent,
    CallEventKind,
    CallEvents,
    CallListener,
    CallOutcome,
    CallRecord,
    Telephony,
)

__all__ = [
    "Batch", "CallEvent", "CallEventKind", "CallEvents", "CallListener", "CallOutcome", "CallRecord",
    "CampaignMembers", "Cursor", "CursorStore", "CustomerLog", "CustomerOwned", "CustomerRepository",
    "DeliveryError", "EmailTransport", "Mailbox", "MailboxError", "Outbox", "Received", "Repository",
    "Scores", "SegmentMembers", "SqlUnitOfWork", "Storage", "StorageFactory", "Telephony",
    "UnitOfWork", "sql_dialect",
]
