"""Metadata filters: one small condition language, parsed here, for both index backends.

Grammar (keywords in any case):

    expr       := term (OR term)*
    term       := factor (AND factor)*
    factor     := NOT factor | '(' expr ')' | condition
    condition  := column op literal
                | column [NOT] IN '(' literal (',' literal)* ')'      ([...] works too)
                | column IS [NOT] NULL
    op         := = | == | != | <> | < | <= | > | >=
    literal    := 'text' (a quote doubled inside: 'O''Keeffe') | "text" | number | TRUE | FALSE
    column     := a name of letters, digits and _, or any name in backticks: `date added`

A missing value matches no comparison, as in SQL (so `NOT genre = 'x'` leaves out images without a
genre; add `OR genre IS NULL` to keep them). The FAISS backend evaluates the parsed condition as a
boolean mask with pandas; LanceDB receives it re-written as a SQL `WHERE`. Nothing in the text is
ever evaluated as code: anything outside the grammar is a one-line "bad filter" error.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from artmem.errors import ArtmemError

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>'(?:[^']|'')*'|"[^"]*")
  | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<quoted>`[^`]+`)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<>|<=|>=|=|<|>)
  | (?P<punct>[(),\[\]])
""", re.VERBOSE)
_KEYWORDS = {"AND", "OR", "NOT", "IN", "IS", "NULL", "TRUE", "FALSE"}
_OPS = {"=": operator.eq, "==": operator.eq, "!=": operator.ne, "<>": operator.ne,
        "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_SQL_OPS = {"=": "=", "==": "=", "!=": "<>", "<>": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


@dataclass(frozen=True)
class Compare:
    column: str
    op: str
    value: object


@dataclass(frozen=True)
class InList:
    column: str
    values: tuple
    negated: bool


@dataclass(frozen=True)
class IsNull:
    column: str
    negated: bool


@dataclass(frozen=True)
class Not:
    arg: object


@dataclass(frozen=True)
class BoolOp:
    op: str  # "AND" or "OR"
    left: object
    right: object


class _Parser:
    def __init__(self, expr: str):
        self.expr = expr
        self.tokens = self._tokenize(expr)
        self.pos = 0

    def error(self, reason: str) -> ArtmemError:
        return ArtmemError(f"bad filter {self.expr!r}: {reason}")

    def _tokenize(self, expr: str) -> list[tuple[str, str, int]]:
        tokens, i = [], 0
        while i < len(expr):
            m = _TOKEN.match(expr, i)
            if m is None:
                raise self.error(f"unexpected {expr[i]!r} at position {i + 1}")
            kind = m.lastgroup
            if kind != "space":
                text = m.group()
                if kind == "name" and text.upper() in _KEYWORDS:
                    kind, text = "keyword", text.upper()
                tokens.append((kind, text, i))
            i = m.end()
        return tokens

    def peek(self, kind: str | None = None, text: str | None = None) -> bool:
        if self.pos >= len(self.tokens):
            return False
        k, t, _ = self.tokens[self.pos]
        return (kind is None or k == kind) and (text is None or t == text)

    def take(self, kind: str | None = None, text: str | None = None, what: str = "") -> tuple[str, str]:
        if not self.peek(kind, text):
            raise self.error(f"expected {what or text or kind}, found {self.found()}")
        k, t, _ = self.tokens[self.pos]
        self.pos += 1
        return k, t

    def parse(self):
        if not self.tokens:
            raise self.error("empty condition")
        node = self.expr_()
        if self.pos < len(self.tokens):
            raise self.error(f"unexpected {self.tokens[self.pos][1]!r} at position {self.tokens[self.pos][2] + 1}")
        return node

    def expr_(self):
        node = self.term()
        while self.peek("keyword", "OR"):
            self.pos += 1
            node = BoolOp("OR", node, self.term())
        return node

    def term(self):
        node = self.factor()
        while self.peek("keyword", "AND"):
            self.pos += 1
            node = BoolOp("AND", node, self.factor())
        return node

    def factor(self):
        if self.peek("keyword", "NOT"):
            self.pos += 1
            return Not(self.factor())
        if self.peek("punct", "("):
            self.pos += 1
            node = self.expr_()
            self.take("punct", ")", "')'")
            return node
        return self.condition()

    def found(self) -> str:
        return f"{self.tokens[self.pos][1]!r}" if self.pos < len(self.tokens) else "the end"

    def column(self) -> str:
        if self.peek("quoted"):
            return self.take("quoted")[1][1:-1]
        return self.take("name", what="a column name")[1]

    def literal(self):
        if self.peek("string"):
            text = self.take("string")[1]
            return text[1:-1].replace("''", "'") if text[0] == "'" else text[1:-1]
        if self.peek("number"):
            text = self.take("number")[1]
            return float(text) if any(c in text for c in ".eE") else int(text)
        if self.peek("keyword", "TRUE") or self.peek("keyword", "FALSE"):
            return self.take("keyword")[1] == "TRUE"
        raise self.error(f"expected a text in quotes, a number, TRUE or FALSE, found {self.found()}")

    def condition(self):
        col = self.column()
        if self.peek("op"):
            op = self.take("op")[1]
            return Compare(col, op, self.literal())
        if self.peek("keyword", "IS"):
            self.pos += 1
            negated = self.peek("keyword", "NOT")
            self.pos += negated
            self.take("keyword", "NULL", "NULL")
            return IsNull(col, negated)
        negated = self.peek("keyword", "NOT")
        self.pos += negated
        if self.peek("keyword", "IN"):
            self.pos += 1
            close = ")" if self.peek("punct", "(") else "]"
            self.take("punct", "(" if close == ")" else "[", "'(' after IN")
            values = [self.literal()]
            while self.peek("punct", ","):
                self.pos += 1
                values.append(self.literal())
            self.take("punct", close, f"{close!r} closing the IN list")
            return InList(col, tuple(values), negated)
        raise self.error(f"expected a comparison (=, !=, <, <=, >, >=, IN, IS NULL) after {col!r}, "
                         f"found {self.found()}")


def _columns(node) -> Iterable[str]:
    if isinstance(node, (Compare, InList, IsNull)):
        yield node.column
    elif isinstance(node, Not):
        yield from _columns(node.arg)
    elif isinstance(node, BoolOp):
        yield from _columns(node.left)
        yield from _columns(node.right)


def parse_filter(expr: str, columns: Iterable[str] | None = None):
    """Parse `expr` (see the module docstring); with `columns`, every name must be one of them.

    Raises:
        ArtmemError: a syntax error or an unknown column (one line, with the reason).
    """
    node = _Parser(expr).parse()
    if columns is not None:
        known = [str(c) for c in columns]
        for col in _columns(node):
            if col not in known:
                raise ArtmemError(f"bad filter {expr!r}: no column {col!r} "
                                  f"(columns: {', '.join(c for c in known if c not in ('id', 'vector'))})")
    return node


def _kind(value) -> str:
    return "text" if isinstance(value, str) else "number"


def _compare(expr: str, series: pd.Series, op, values: list) -> tuple[np.ndarray, np.ndarray]:
    """(true, false) masks of `op(series, value)` for each value, OR-ed; missing values are neither."""
    known = series.notna().to_numpy()
    numeric = pd.api.types.is_numeric_dtype(series.dtype)
    for v in values:
        if numeric != (_kind(v) == "number"):
            raise ArtmemError(f"bad filter {expr!r}: column {series.name!r} holds "
                              f"{'numbers' if numeric else 'text'}, compared with {v!r}")
    sub = series[known]
    hit = np.zeros(len(series), dtype=bool)
    try:
        for v in values:
            hit[known] |= np.asarray(op(sub, v), dtype=bool)
    except TypeError as exc:
        raise ArtmemError(f"bad filter {expr!r}: cannot compare column {series.name!r} with "
                          f"{values[0]!r} ({exc})") from exc
    return hit, known & ~hit


def _evaluate(expr: str, node, items: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Kleene three-valued logic as (true, false) masks: a row in neither is unknown (NULL)."""
    if isinstance(node, Compare):
        return _compare(expr, items[node.column], _OPS[node.op], [node.value])
    if isinstance(node, InList):
        t, f = _compare(expr, items[node.column], operator.eq, list(node.values))
        return (f, t) if node.negated else (t, f)
    if isinstance(node, IsNull):
        missing = items[node.column].isna().to_numpy()
        return (~missing, missing) if node.negated else (missing, ~missing)
    if isinstance(node, Not):
        t, f = _evaluate(expr, node.arg, items)
        return f, t
    lt, lf = _evaluate(expr, node.left, items)
    rt, rf = _evaluate(expr, node.right, items)
    if node.op == "AND":
        return lt & rt, lf | rf
    return lt | rt, lf & rf


def filter_mask(items: pd.DataFrame, expr: str | None) -> np.ndarray:
    """Boolean mask of the rows of `items` matching `expr` (all rows when None/empty)."""
    if not expr:
        return np.ones(len(items), dtype=bool)
    node = parse_filter(expr, items.columns)
    return _evaluate(expr, node, items)[0]


def _sql_literal(value) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def _sql(node) -> str:
    if isinstance(node, Compare):
        return f"`{node.column}` {_SQL_OPS[node.op]} {_sql_literal(node.value)}"
    if isinstance(node, InList):
        values = ", ".join(_sql_literal(v) for v in node.values)
        return f"`{node.column}` {'NOT IN' if node.negated else 'IN'} ({values})"
    if isinstance(node, IsNull):
        return f"`{node.column}` IS {'NOT NULL' if node.negated else 'NULL'}"
    if isinstance(node, Not):
        return f"NOT ({_sql(node.arg)})"
    return f"({_sql(node.left)}) {node.op} ({_sql(node.right)})"


def to_sql_where(expr: str, columns: Iterable[str] | None = None) -> str:
    """The SQL `WHERE` text of `expr` for LanceDB (columns in backticks, text literals re-quoted)."""
    return _sql(parse_filter(expr, columns))
