"""What a PostgreSQL statement is, read with PostgreSQL's own parser (pglast binds
libpg_query) before it is sent: its kind, and every name it could call."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from db.problem import Problem

_READ_STATEMENTS = {"SelectStmt", "VariableShowStmt"}


class NotARead(Problem):
    """The statement is not one read; the message says what it is instead."""


@dataclass(frozen=True)
class Statement:
    names: frozenset[str]  # identifiers and operators outside literals: what it may call


def read_statement(sql: str) -> Statement:
    """Parse `sql`; raises NotARead unless it is one SELECT (or VALUES, TABLE), EXPLAIN of
    one, or SHOW, with nothing inside that writes, locks rows or creates a table.
    Raises pglast.parser.ParseError on a syntax error."""
    from pglast.parser import parse_sql_json  # imported when used: only PostgreSQL needs it

    tree = json.loads(parse_sql_json(sql))
    statements = tree.get("stmts", [])
    if len(statements) != 1:
        raise NotARead("it runs one statement, this text has " + ("none" if not statements else "several"))
    [(kind, body)] = statements[0]["stmt"].items()
    if kind == "ExplainStmt":
        [(kind, body)] = body["query"].items()
    if kind not in _READ_STATEMENTS:
        raise NotARead(f"it runs a SELECT, VALUES, EXPLAIN or SHOW, not {_plain(kind)}")
    for node_kind, node in _nodes(body, kind):
        if node_kind.endswith("Stmt") and node_kind not in _READ_STATEMENTS:
            raise NotARead(f"the {_plain(node_kind)} inside the statement writes")
        if node_kind == "SelectStmt" and node.get("intoClause"):
            raise NotARead("SELECT ... INTO creates a table")
        if node_kind == "SelectStmt" and node.get("lockingClause"):
            raise NotARead("FOR UPDATE / FOR SHARE locks rows")
    return Statement(frozenset(_names(body)))


def _plain(kind: str) -> str:
    """`CreateTableAsStmt` -> `CREATE TABLE AS`, for the message."""
    words = {"TransactionStmt": "transaction control", "VariableSetStmt": "SET", "DoStmt": "a DO block"}
    return words.get(kind) or re.sub(r"(?<=[a-z])(?=[A-Z])", " ", kind.removesuffix("Stmt")).upper()


def _nodes(value: Any, kind: str | None = None) -> Iterator[tuple[str, dict]]:
    """Every node of the tree under `value`, as (its kind, its fields); in libpg_query's
    JSON a node is {"Kind": {fields}} and fields are lower-case."""
    if isinstance(value, dict):
        if kind is not None:
            yield kind, value
        for key, child in value.items():
            yield from _nodes(child, key if key[:1].isupper() and isinstance(child, dict) else None)
    elif isinstance(value, list):
        for item in value:
            yield from _nodes(item)


def _names(body: dict) -> Iterator[str]:
    """Every identifier and operator name, but not the values of literals (A_Const)."""
    stack = [body]
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, dict):
            for key, child in value.items():
                if key == "A_Const":
                    continue
                if key == "String" and isinstance(child, dict) and "sval" in child:
                    yield child["sval"]
                else:
                    stack.append(child)
