"""The control group: drawn by hashing, so anyone can recompute who was held out.

Permuted-block randomisation, stratified: within each stratum, members are taken
in customer-id order and cut into consecutive blocks of `size` (the denominator
of the control fraction, e.g. 10 for 10 %); in each block the `held` slots with
the smallest SHA-256 of `campaign|seed|stratum|block|slot` are control. Every
complete block therefore holds out exactly the fraction, in every stratum, and the
draw streams: memory holds one open block per stratum, never the audience.

An audit needs only the campaign id, the seed, the fraction and the members
with their strata (`audit`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from fractions import Fraction

import attrs

from crmcore.errors import ValidationError
from crmcore.model.marketing import MemberGroup

MAX_BLOCK = 100


@attrs.frozen
class Design:
    campaign_id: str
    seed: str
    held: int
    """Control slots per block."""
    size: int
    """Block size."""

    @classmethod
    def of(cls, campaign_id: str, seed: str, fraction: float) -> Design:
        if not 0 <= fraction <= 0.5:
            raise ValidationError("control_fraction", fraction, "must be from 0 to 0.5")
        ratio = Fraction(fraction).limit_denominator(MAX_BLOCK)
        return cls(campaign_id, seed, ratio.numerator, ratio.denominator)

    @property
    def fraction(self) -> float:
        return self.held / self.size

    def control_slots(self, stratum: str, block: int) -> frozenset[int]:
        """Which positions of this block are held out."""
        if self.held == 0:
            return frozenset()
        ranked = sorted(range(self.size), key=lambda slot: self._digest(stratum, block, slot))
        return frozenset(ranked[: self.held])

    def _digest(self, stratum: str, block: int, slot: int) -> bytes:
        text = f"{self.campaign_id}|{self.seed}|{stratum}|{block}|{slot}"
        return hashlib.sha256(text.encode("utf-8")).digest()


def assign(design: Design, members: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str, MemberGroup]]:
    """(customer id, stratum, group) for members given as (customer id, stratum) in customer-id order."""
    seen: dict[str, int] = {}
    slots: dict[str, frozenset[int]] = {}
    for customer_id, stratum in members:
        position = seen.get(stratum, 0)
        seen[stratum] = position + 1
        block, slot = divmod(position, design.size)
        if slot == 0:
            slots[stratum] = design.control_slots(stratum, block)
        held = slot in slots[stratum]
        yield customer_id, stratum, MemberGroup.CONTROL if held else MemberGroup.TARGET


def joined_group(design: Design, customer_id: str) -> MemberGroup:
    """The group of a customer who joins after launch: drawn alone from the campaign, seed
    and customer id (control with the design's fraction), so an audit can draw it again."""
    text = f"{design.campaign_id}|{design.seed}|joined|{customer_id}"
    draw = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")
    return MemberGroup.CONTROL if draw * design.size < design.held * 2**64 else MemberGroup.TARGET


def audit(design: Design, members: Iterable[tuple[str, str, MemberGroup]]) -> list[str]:
    """Customer ids whose stored group differs from a fresh draw (empty: the draw is as recorded).

    `members` must come in customer-id order, as stored.
    """
    stored = list(members)
    redrawn = assign(design, ((c, s) for c, s, _ in stored))
    return [c for (c, _, group), (_, _, fresh) in zip(stored, redrawn, strict=True) if group is not fresh]
