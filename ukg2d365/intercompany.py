"""Intercompany: which legal entity a line belongs to, and the due-to / due-from lines that balance. Pure.

A UKG company is paid by one D365 legal entity (``legal_entities.by_company``); an expense line whose
dimension value belongs to another entity (``legal_entities.by_dimension``: a plant that is a legal entity
of its own) is booked in that entity's journal instead. D365's general journal entity "doesn't support
intercompany transactions" (MicrosoftDocs/dynamics-365-unified-operations-public articles/fin-ops-core/
dev-itpro/data-entities/entity-general-journal.md), so the balancing lines are generated here:

for each bearing entity B of a pay run paid by P, with X = the debits minus the credits moved to B,

* P's journal gets a debit of X to ``due_from_account`` (a receivable from B),
* B's journal gets a credit of X to ``due_to_account`` (a payable to P).

P's journal balanced before the move, so it balances after it; B's lines net to X, so its journal
balances; and the intercompany lines net to zero across the entities. A credit that moves (a reversal
charged to B's cost center) lowers X like any other line: the pair is settled on its net, and a net
below zero flips both sides (P credits due-from, B debits due-to). A net of exactly zero needs no
intercompany line. One pair of lines per (P, B): one journal per pay run per entity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class EntityRouting:
    """Which legal entity pays a company and which bears a line; entity ids as configured (e.g. USMF)."""

    default_entity: str  # d365.legal_entity: the one entity when legal_entities is not configured
    by_company: Mapping[str, str] | None = None  # None: every company is paid by default_entity
    dimension: str | None = None  # by_dimension.dimension
    by_value: Mapping[str, str] | None = None  # by_dimension.values: dimension value -> bearing entity

    def paying(self, company: str) -> str | None:
        """The entity paying this UKG company; None when legal_entities does not map it."""
        if self.by_company is None:
            return self.default_entity
        return self.by_company.get(company)

    def bearing(self, dimensions: Iterable[tuple[str, str]]) -> str | None:
        """The entity bearing a line by its dimension values; None: the paying entity bears it."""
        if self.dimension is None or not self.by_value:
            return None
        for name, value in dimensions:
            if name == self.dimension:
                return self.by_value.get(value)
        return None


@dataclass(frozen=True)
class Transfer:
    """Expense moved from the paying entity's journal to the bearing entity's: debits minus credits."""

    paying: str
    bearing: str
    amount: Decimal


@dataclass(frozen=True)
class BalancingLine:
    entity: str  # the journal it belongs to
    counterparty: str  # the other entity of the pair
    main_account: str
    debit: Decimal
    credit: Decimal


def transfers(paying: str, moved: Iterable[tuple[str, Decimal, Decimal]]) -> list[Transfer]:
    """One transfer per bearing entity other than ``paying``, from its lines (entity, debit, credit).

    Entities in sorted order, so the same run always yields the same lines; a net of zero gives none.
    """
    nets: dict[str, Decimal] = {}
    for entity, debit, credit in moved:
        if entity == paying:
            continue
        nets[entity] = nets.get(entity, Decimal(0)) + debit - credit
    return [Transfer(paying, entity, net) for entity, net in sorted(nets.items()) if net != 0]


def balancing_lines(transfer: Transfer, due_from_account: str, due_to_account: str) -> tuple[BalancingLine, ...]:
    """The two lines that settle one transfer: due-from in the paying entity, due-to in the bearing one."""
    amount = transfer.amount
    zero = amount * 0
    size = -amount if amount < 0 else amount
    receivable = amount > 0  # the usual case: the paying entity is owed by the bearing one
    return (
        BalancingLine(transfer.paying, transfer.bearing, due_from_account,
                      size if receivable else zero, zero if receivable else size),
        BalancingLine(transfer.bearing, transfer.paying, due_to_account,
                      zero if receivable else size, size if receivable else zero),
    )


def net_of(lines: Iterable[BalancingLine]) -> Decimal:
    """Debits minus credits of intercompany lines: zero across all journals of a pay run."""
    return sum((ln.debit - ln.credit for ln in lines), Decimal(0))
