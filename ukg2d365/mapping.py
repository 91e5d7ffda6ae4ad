"""Pure mapping: UKG codes -> D365 main accounts, dimension values and display values. No I/O."""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
    """A D365 ledger account: main account plus dimension values in ledger-format order."""

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


class Mapper:
    def __init__(self, mapping: MappingConfig) -> None:
        self._cfg = mapping
        self.delimiter = mapping.delimiter
        self.dimension_order = tuple(mapping.ledger_format[1:])

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
        if not ukg_code:
            return ""
        value = self._cfg.dimensions[name].values.get(ukg_code, ukg_code)
        return check_segment(name, value, self.delimiter)

    def ledger_account(self, ukg_account: str, org_level: Callable[[str], str]) -> LedgerAccount:
        """Map one GL line; ``org_level('orgLevel1')`` returns that line's UKG code."""
        main = self.main_account(ukg_account)
        dims = tuple(
            (name, self.dimension_value(name, org_level(self._cfg.dimensions[name].source)))
            for name in self.dimension_order
        )
        return LedgerAccount(main, dims, self.delimiter.join([main, *(v for _, v in dims)]))

    def default_dimension_display(self, values: Mapping[str, str], order: list[str]) -> str:
        """DimensionDisplayValue in D365's default dimension format order (no main account)."""
        return self.delimiter.join(values.get(name, "") for name in order)
