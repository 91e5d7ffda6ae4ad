"""Pure mapping: UKG codes -> D365 main accounts, dimension values and display values. No I/O."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ukg2d365.config import MappingConfig

# D365 dimension values are at most 30 characters (General ledger > financial dimensions).
MAX_VALUE_LENGTH = 30
MAX_MAIN_ACCOUNT_LENGTH = 20


class MappingError(ValueError):
    """A code cannot be mapped; ``kind`` says what it is ('account' or the dimension name)."""

    def __init__(self, kind: str, code: str, reason: str) -> None:
        super().__init__(f"{kind} {code!r}: {reason}")
        self.kind = kind
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LedgerAccount:
    """A D365 ledger account: main account, the fed dimension values in D365's order, the display value."""

    main_account: str
    dimensions: tuple[tuple[str, str], ...]
    display: str


def check_segment(kind: str, code: str, delimiter: str, max_length: int = MAX_VALUE_LENGTH) -> str:
    """Refuse a code that would silently corrupt a display value (delimiter, length, control chars)."""
    if delimiter in code:
        raise MappingError(kind, code, f"contains the segment delimiter {delimiter!r}; it would shift every segment")
    if len(code) > max_length:
        raise MappingError(kind, code, f"is longer than D365's {max_length} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in code):
        raise MappingError(kind, code, "contains control characters")
    if code != code.strip():
        raise MappingError(kind, code, "has leading or trailing spaces")
    return code


MAIN_ACCOUNT = "MainAccount"


@dataclass(frozen=True, slots=True)
class DimensionFormats:
    """D365's active integration formats: the order of segments in every display value.

    ``ledger`` starts with MainAccount (AccountDisplayValue); ``default`` has no main account (a worker's
    DimensionDisplayValue, a line's DefaultDimensionDisplayValue). Both are global and cumulative in D365:
    "Any dimensions not used for a given legal entity are to be left blank" (MicrosoftDocs/
    dynamics-365-unified-operations-public articles/fin-ops-core/dev-itpro/financial/
    financial-dimension-configuration-integration.md), so a dimension UKG does not feed is an empty segment.
    """

    ledger: tuple[str, ...]
    default: tuple[str, ...] = ()

    @classmethod
    def configured(cls, mapping: MappingConfig, default_dimensions: list[str] | None = None) -> DimensionFormats:
        """The formats the config states (its guards, else MainAccount + mapped dimensions in config order).

        For planning without D365 (unit tests, pure helpers); the flows pass the formats read from D365.
        """
        ledger = tuple(mapping.ledger_format or (MAIN_ACCOUNT, *mapping.dimensions))
        default = tuple(default_dimensions if default_dimensions is not None else ledger[1:])
        return cls(ledger, default)

    def fed(self, mapping: MappingConfig, *, ledger: bool = True) -> tuple[str, ...]:
        """Dimensions of this format that the mapping gives a value (an org level or a constant)."""
        names = self.ledger[1:] if ledger else self.default
        return tuple(n for n in names if n in mapping.dimensions)

    def blank(self, mapping: MappingConfig, *, ledger: bool = True) -> tuple[str, ...]:
        """Dimensions of this format that stay an empty segment on every line."""
        names = self.ledger[1:] if ledger else self.default
        return tuple(n for n in names if n not in mapping.dimensions)


def positional_display(order: Sequence[str], values: Mapping[str, str], delimiter: str) -> str:
    """One segment per name of ``order``, '' where ``values`` has none; trailing delimiters are kept.

    D365 reads segments by position, so a blank must still take its place: a recorded live value is
    ``51040302--81--JD-`` (main account and five dimensions, three of them blank).
    """
    return delimiter.join(values.get(name, "") for name in order)


class Mapper:
    def __init__(self, mapping: MappingConfig, formats: DimensionFormats | None = None) -> None:
        self._cfg = mapping
        self.delimiter = mapping.delimiter
        self.formats = formats or DimensionFormats.configured(mapping)
        if not self.formats.ledger or self.formats.ledger[0] != MAIN_ACCOUNT:
            raise ValueError("a ledger dimension format starts with MainAccount")
        # Fed dimensions in D365's order; the others are blank segments of every display value.
        self.dimension_order = self.formats.fed(mapping)

    def main_account(self, ukg_account: str) -> str:
        target = self._cfg.main_accounts.get(ukg_account)
        if target is None:
            if self._cfg.unmapped_accounts == "passthrough":
                target = ukg_account
            else:
                raise MappingError("account", ukg_account, "has no entry in mapping.main_accounts")
        return check_segment("main account", target, self.delimiter, MAX_MAIN_ACCOUNT_LENGTH)

    def dimension_value(self, name: str, ukg_code: str) -> str:
        """The D365 value for a UKG org-level code ('' stays blank: the segment is left empty)."""
        dim = self._cfg.dimensions[name]
        if dim.value is not None:
            return check_segment(name, dim.value, self.delimiter)
        if not ukg_code:
            return ""
        value = dim.values.get(ukg_code, ukg_code)
        return check_segment(name, value, self.delimiter)

    def value_of(self, name: str, org_level: Callable[[str], str]) -> str:
        """A fed dimension's value for one record; ``org_level('orgLevel1')`` reads that record's code."""
        dim = self._cfg.dimensions[name]
        return self.dimension_value(name, "" if dim.source is None else org_level(dim.source))

    def ledger_account(self, ukg_account: str, org_level: Callable[[str], str]) -> LedgerAccount:
        """Map one GL line; ``org_level('orgLevel1')`` returns that line's UKG code."""
        main = self.main_account(ukg_account)
        dims = tuple((name, self.value_of(name, org_level)) for name in self.dimension_order)
        display = positional_display(self.formats.ledger, {MAIN_ACCOUNT: main, **dict(dims)}, self.delimiter)
        return LedgerAccount(main, dims, display)

    def display_of(self, main_account: str, dimensions: Mapping[str, str] | None = None) -> str:
        """The AccountDisplayValue of a main account and constant dimensions (the other segments blank)."""
        return positional_display(self.formats.ledger, {MAIN_ACCOUNT: main_account, **(dimensions or {})},
                                  self.delimiter)

    def default_dimension_display(self, values: Mapping[str, str], order: Sequence[str] | None = None) -> str:
        """DimensionDisplayValue in D365's default dimension format order (no main account)."""
        return positional_display(self.formats.default if order is None else order, values, self.delimiter)
