"""`$filter` expressions and key predicates, parsed as F&O's OData layer accepts them."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ukg2d365.sandbox.d365.errors import ODataError, odata_error
from ukg2d365.sandbox.d365.schema import ENUMS, NAMESPACE, EntitySpec
from ukg2d365.sandbox.d365.values import parse_dto, render_dto

_TOKEN_RE = re.compile(
    r"""\s*(?:
      (?P<enum>[A-Za-z_][\w.]*'(?:[^']|'')*')
     |(?P<str>'(?:[^']|'')*')
     |(?P<dt>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2}))?)(?![\w.])
     |(?P<num>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)[mMdD]?(?![\w.])
     |(?P<lp>\()|(?P<rp>\))|(?P<comma>,)|(?P<eq>=)
     |(?P<ident>[A-Za-z_$][\w./]*)
    )""",
    re.X,
)


@dataclass(frozen=True)
class _Tok:
    kind: str  # enum, str, dt, num, lp, rp, comma, eq, ident, end
    text: str
    value: Any = None


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            raise odata_error(f"Syntax error at position {pos} in '{text}'.")
        kind = m.lastgroup or ""
        raw = m.group(kind)
        value: Any = None
        if kind == "str":
            value = raw[1:-1].replace("''", "'")
        elif kind == "enum":
            type_name, _, member = raw.partition("'")
            value = (type_name, member[:-1].replace("''", "'"))
        elif kind == "num":
            value = Decimal(raw)
        elif kind == "dt":
            value = parse_dto(raw, require_time=False)
            if value is None:
                raise odata_error(f"Unrecognized 'Edm.DateTimeOffset' literal '{raw}' in '{text}'.")
        toks.append(_Tok(kind, raw, value))
        pos = m.end()
    toks.append(_Tok("end", ""))
    return toks


_COMPARISONS = {"eq", "ne", "gt", "ge", "lt", "le"}
_OPERATOR_NAMES = {"eq": "Equal", "ne": "NotEqual", "gt": "GreaterThan", "ge": "GreaterThanOrEqual",
                   "lt": "LessThan", "le": "LessThanOrEqual"}
Predicate = Callable[[dict[str, Any]], bool]


class FilterParser:
    """$filter as F&O's OData layer accepts it: comparisons joined by and/or/not, with parentheses.

    String comparisons are case-insensitive (SQL Server collation) and `eq '*x*'` is a LIKE
    wildcard. Functions (contains, startswith...), `has` and `in` are refused, as in F&O.
    """

    def __init__(self, spec: EntitySpec, text: str) -> None:
        self.spec = spec
        self.text = text
        self.toks = _tokenize(text)
        self.pos = 0

    def parse(self) -> Predicate:
        pred = self._or()
        if self._peek().kind != "end":
            raise self._syntax()
        return pred

    def _peek(self) -> _Tok:
        return self.toks[self.pos]

    def _next(self) -> _Tok:
        tok = self.toks[self.pos]
        self.pos += 1
        return tok

    def _syntax(self) -> ODataError:
        tok = self._peek()
        where = f"'{tok.text}'" if tok.kind != "end" else "the end"
        return odata_error(f"The query specified in the URI is not valid. Syntax error at {where} in '{self.text}'.")

    def _is_word(self, word: str) -> bool:
        tok = self._peek()
        return tok.kind == "ident" and tok.text == word

    def _or(self) -> Predicate:
        parts = [self._and()]
        while self._is_word("or"):
            self._next()
            parts.append(self._and())
        if len(parts) == 1:
            return parts[0]
        return lambda rec: any(p(rec) for p in parts)

    def _and(self) -> Predicate:
        parts = [self._not()]
        while self._is_word("and"):
            self._next()
            parts.append(self._not())
        if len(parts) == 1:
            return parts[0]
        return lambda rec: all(p(rec) for p in parts)

    def _not(self) -> Predicate:
        if self._is_word("not"):
            self._next()
            inner = self._not()
            return lambda rec: not inner(rec)
        return self._primary()

    def _primary(self) -> Predicate:
        if self._peek().kind == "lp":
            self._next()
            inner = self._or()
            if self._next().kind != "rp":
                self.pos -= 1
                raise self._syntax()
            return inner
        return self._comparison()

    def _operand(self) -> tuple[str, Any]:
        tok = self._next()
        if tok.kind == "ident":
            if tok.text in ("true", "false"):
                return "bool", tok.text == "true"
            if tok.text == "null":
                return "null", None
            if self._peek().kind == "lp":
                raise odata_error(f"The query specified in the URI is not valid. The function '{tok.text}' is "
                                  "not supported.")
            if "/" in tok.text:
                raise odata_error("The query specified in the URI is not valid. Navigation paths are not supported "
                                  f"in $filter: '{tok.text}'.")
            if tok.text not in self.spec.types:
                raise odata_error(f"The query specified in the URI is not valid. Could not find a property named "
                                  f"'{tok.text}' on type '{NAMESPACE}.{self.spec.type_name}'.")
            return "prop", tok.text
        if tok.kind in ("str", "num", "enum", "dt"):
            return tok.kind, tok.value
        self.pos -= 1
        raise self._syntax()

    def _comparison(self) -> Predicate:
        left = self._operand()
        op_tok = self._next()
        if op_tok.kind != "ident" or op_tok.text not in _COMPARISONS:
            self.pos -= 1
            if op_tok.kind == "ident" and op_tok.text in ("has", "in"):
                raise odata_error(f"The query specified in the URI is not valid. The operator '{op_tok.text}' is "
                                  "not supported.")
            raise self._syntax()
        op = op_tok.text
        right = self._operand()
        if left[0] != "prop" and right[0] == "prop":
            flipped = {"gt": "lt", "lt": "gt", "ge": "le", "le": "ge"}.get(op, op)
            left, right, op = right, left, flipped
        if left[0] != "prop":
            raise odata_error("The query specified in the URI is not valid. A comparison needs a property.")
        return self._compile(left[1], op, right)

    def _incompatible(self, prop: str, literal_type: str, op: str) -> ODataError:
        return odata_error(
            "The query specified in the URI is not valid. A binary operator with incompatible types was detected. "
            f"Found operand types '{self.spec.edm(prop)}' and '{literal_type}' for operator kind "
            f"'{_OPERATOR_NAMES[op]}'."
        )

    def _compile(self, prop: str, op: str, literal: tuple[str, Any]) -> Predicate:
        kind, value = literal
        code = self.spec.types[prop]
        if kind == "prop":
            other = value
            return lambda rec: _compare(op, _sortable(rec[prop]), _sortable(rec[other]))
        if kind == "null":
            # F&O never stores null: only an "empty" value equals null
            return lambda rec: (rec[prop] in ("", None)) == (op == "eq")
        if code == "s":
            return self._compile_string(prop, op, kind, value)
        ordered = _ORDERED_TYPES.get(code)
        if ordered is None:
            return self._compile_enum(prop, op, kind, value, code[2:])
        literal_kind, read = ordered
        if kind != literal_kind:
            raise self._incompatible(prop, _literal_edm(kind, value), op)
        return lambda rec: _compare(op, read(rec[prop]), value)

    def _compile_string(self, prop: str, op: str, kind: str, value: Any) -> Predicate:
        if kind != "str":
            raise self._incompatible(prop, _literal_edm(kind, value), op)
        if op in ("eq", "ne") and "*" in value:
            pattern = re.compile(".*".join(re.escape(part) for part in value.split("*")), re.I | re.S)
            want = op == "eq"
            return lambda rec: bool(pattern.fullmatch(rec[prop])) == want
        folded = value.casefold()
        return lambda rec: _compare(op, rec[prop].casefold(), folded)

    def _compile_enum(self, prop: str, op: str, kind: str, value: Any, enum_name: str) -> Predicate:
        if op not in ("eq", "ne"):
            raise odata_error("The query specified in the URI is not valid. Enum properties support only eq and ne.")
        if kind == "enum":
            type_name, member = value
            if type_name != f"{NAMESPACE}.{enum_name}":
                raise self._incompatible(prop, type_name, op)
        elif kind == "str":
            member = value
        else:
            raise self._incompatible(prop, _literal_edm(kind, value), op)
        if member not in ENUMS[enum_name]:
            raise odata_error(f"The query specified in the URI is not valid. The string '{member}' is not a valid "
                              "enumeration type constant.")
        return lambda rec: (rec[prop] == member) == (op == "eq")


# Numbers and dates: the literal kind each type code compares with, and how a stored value is read for it.
_ORDERED_TYPES: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "d": ("num", Decimal), "i": ("num", Decimal), "l": ("num", Decimal), "t": ("dt", parse_dto), "D": ("dt", parse_dto),
}


def _literal_edm(kind: str, value: Any) -> str:
    if kind == "enum":
        return str(value[0])
    return {"str": "Edm.String", "num": "Edm.Decimal", "dt": "Edm.DateTimeOffset", "bool": "Edm.Boolean"}.get(
        kind, "Edm.Untyped")


def _compare(op: str, a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    if op == "eq":
        return bool(a == b)
    if op == "ne":
        return bool(a != b)
    if op == "gt":
        return bool(a > b)
    if op == "ge":
        return bool(a >= b)
    if op == "lt":
        return bool(a < b)
    return bool(a <= b)


def sort_key(prop: str) -> Callable[[dict[str, Any]], Any]:
    return lambda rec: _sortable(rec[prop])


def _sortable(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def parse_key(spec: EntitySpec, text: str) -> dict[str, Any]:
    """`dataAreaId='usmf',JournalBatchNumber='X'` (or `'X'` for a single key) -> {prop: typed value}."""
    toks = _tokenize(text)
    pairs: list[tuple[str | None, _Tok]] = []
    i = 0
    while toks[i].kind != "end":
        if toks[i].kind == "ident" and toks[i + 1].kind == "eq":
            name: str | None = toks[i].text
            lit = toks[i + 2]
            i += 3
        else:
            name, lit = None, toks[i]
            i += 1
        pairs.append((name, lit))
        if toks[i].kind == "comma":
            i += 1
        elif toks[i].kind != "end":
            raise odata_error(f"Bad key predicate '({text})'.")
    mismatch = odata_error(
        "The number of keys specified in the URI does not match number of key properties for the resource "
        f"'{NAMESPACE}.{spec.type_name}'."
    )
    if len(pairs) != len(spec.keys):
        raise mismatch
    if len(pairs) == 1 and pairs[0][0] is None:
        pairs = [(spec.keys[0], pairs[0][1])]
    key: dict[str, Any] = {}
    for name, lit in pairs:
        if name not in spec.keys or name in key:
            raise mismatch
        key[name] = _key_value(spec, name, lit, text)
    return key


def _key_value(spec: EntitySpec, name: str, lit: _Tok, text: str) -> Any:
    code = spec.types[name]
    bad = odata_error(f"The key value in '({text})' is not valid for the key property '{name}' of type "
                      f"'{spec.edm(name)}'.")
    if code == "s":
        if lit.kind != "str":
            raise bad
        return lit.value
    if code in ("d", "i", "l"):
        if lit.kind != "num":
            raise bad
        return lit.value if code == "d" else int(lit.value)
    if code.startswith("e:"):
        if lit.kind == "enum":
            return lit.value[1]
        if lit.kind == "str":
            return lit.value
        raise bad
    if lit.kind != "dt":
        raise bad
    return render_dto(lit.value)
