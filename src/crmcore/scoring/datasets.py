"""Public data sets as crmcore records, to check the models against published results."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from crmcore.errors import ValidationError
from crmcore.model import Customer, OrderLine, Purchase
from crmcore.values import Money


def cdnow(path: Path | str) -> Iterator[Customer | Purchase]:
    """The CDNOW sample (`CDNOW_sample.txt`) as customers, each followed by its purchases.

    Customer ids are `cdnow-0001` ... (the sample's ids, zero-padded so that id
    order is the files' order); each transaction is one purchase of one line
    holding the CDs bought and their dollar value.
    """
    current: str | None = None
    with Path(path).open(encoding="ascii") as lines:
        for number, line in enumerate(lines, start=1):
            fields = line.split()
            if not fields:
                continue
            try:
                _full_id, sample_id, day, cds, dollars = fields
                ordered = datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC)
                customer_id = f"cdnow-{int(sample_id):04d}"
                count = int(cds)
                amount = Decimal(dollars)
            except ValueError:
                raise ValidationError(f"line {number}", line.strip(), "is not a CDNOW record") from None
            if customer_id != current:
                current = customer_id
                yield Customer.new(f"CDNOW customer {int(sample_id)}", id=customer_id,
                                   created_at=ordered)
            yield Purchase(
                id=f"{customer_id}-{number}", customer_id=customer_id, ordered_at=ordered,
                lines=(OrderLine(product=f"{count} CDs", unit_price=Money(amount, "USD"),
                                 category="cd"),),
            )
