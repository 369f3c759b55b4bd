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

__all__ = [
    "Batch", "CampaignMembers", "Cursor", "CursorStore", "CustomerLog", "CustomerOwned",
    "CustomerRepository", "DeliveryError", "EmailTransport", "Mailbox", "MailboxError", "Outbox",
    "Received", "Repository", "Scores", "SegmentMembers", "SqlUnitOfWork", "Storage",
    "StorageFactory", "UnitOfWork", "sql_dialect",
]
