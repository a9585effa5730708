"""Read-only guard for SQL that users write: one query over the registered tables, nothing else.

SedonaDB (DataFusion) runs whatever it is given: ``COPY ... TO '/any/file'`` writes files,
``CREATE EXTERNAL TABLE ... LOCATION '/etc/passwd'`` and ``SELECT * FROM '/path/file.parquet'``
read files never registered, ``SET`` changes the session. geodetect's ``sql`` is for querying
detections and regions, so by default it refuses all of that, in two steps:

1. before SedonaDB sees the text (planning alone would already read a file's schema): the
   statement must be a single ``SELECT`` / ``WITH`` / ``VALUES`` query, and no table position
   (after ``FROM``, ``JOIN`` or a comma in a ``FROM`` list) may hold a quoted string or a quoted
   identifier that is not a registered table;
2. after planning, before running: every table the logical plan scans must be a registered
   table (a file path or ``information_schema`` is refused).

Trusted users who want DataFusion's file access pass ``allow_files=True`` (CLI: ``--allow-files``).
"""

from __future__ import annotations

import re

from geodetect.errors import ConfigError

__all__ = ["check_query_text", "check_plan_scans", "READ_ONLY_HINT"]

READ_ONLY_HINT = ("geodetect sql runs one read-only query (SELECT, WITH or VALUES) over the tables given with "
                  "--table (Python: keyword arguments); for trusted use, --allow-files (Python: allow_files=True) "
                  "lifts this")

_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      |(?P<line>--[^\n]*)
      |(?P<block>/\*.*?(\*/|\Z))
      |(?P<str>[EeXxBbRr]?'(?:[^']|'')*(?:'|\Z))
      |(?P<qid>"(?:[^"]|"")*(?:"|\Z)|`[^`]*(?:`|\Z))
      |(?P<word>[A-Za-z_][A-Za-z0-9_$]*)
      |(?P<num>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)
      |(?P<op>.)""",
    re.S | re.X,
)

_STARTS = {"SELECT", "WITH", "VALUES"}
#: statement words that write or change state: refused anywhere in the text (``WITH ... INSERT``)
_WRITES = {"COPY", "INSERT", "UPDATE", "DELETE", "MERGE", "CREATE", "DROP", "ALTER", "TRUNCATE", "SET", "ATTACH",
           "PREPARE", "EXECUTE", "DEALLOCATE"}
_TABLE_KEYWORDS = {"FROM", "JOIN"}
_CLAUSE_ENDS = {"SELECT", "WHERE", "GROUP", "HAVING", "ORDER", "LIMIT", "OFFSET", "UNION", "INTERSECT", "EXCEPT",
                "WINDOW", "QUALIFY", "ON", "USING", "VALUES", "FETCH"}


def _tokens(query: str):
    for m in _TOKEN.finditer(query):
        kind = m.lastgroup
        if kind in ("ws", "line", "block"):
            continue
        yield kind, m.group()


def check_query_text(query: str, tables) -> None:
    """Step 1 (see the module docstring); ConfigError with one line when the text is refused."""
    names = {str(t).lower() for t in tables}
    toks = list(_tokens(query))
    while toks and toks[-1] == ("op", ";"):
        toks.pop()
    if not toks:
        raise ConfigError("the SQL query is empty")
    if any(t == ("op", ";") for t in toks):
        raise ConfigError(f"the SQL holds more than one statement; {READ_ONLY_HINT}")
    first = next((v.upper() for k, v in toks if k != "op" or v != "("), "")
    if first not in _STARTS:
        raise ConfigError(f"SQL statement {first or toks[0][1]!r} refused: {READ_ONLY_HINT}")
    writes = sorted({v.upper() for k, v in toks if k == "word" and v.upper() in _WRITES})
    if writes:
        raise ConfigError(f"SQL holds {', '.join(writes)}: {READ_ONLY_HINT}")
    clause = [None]  # per parenthesis depth: the clause keyword we are in
    prev = None
    for kind, val in toks:
        up = val.upper() if kind == "word" else None
        in_table_position = prev in _TABLE_KEYWORDS or (prev == "," and clause[-1] == "FROM")
        if in_table_position and kind == "str":
            raise ConfigError(f"SQL reads the file {val} directly; only the registered tables "
                              f"({', '.join(sorted(names)) or 'none'}) may be queried. {READ_ONLY_HINT}")
        if in_table_position and kind == "qid" and val[1:-1].replace('""', '"').lower() not in names:
            raise ConfigError(f"SQL table {val} is not one of the registered tables "
                              f"({', '.join(sorted(names)) or 'none'}). {READ_ONLY_HINT}")
        if kind == "op" and val == "(":
            clause.append(None)
        elif kind == "op" and val == ")":
            if len(clause) > 1:
                clause.pop()
        elif up in _TABLE_KEYWORDS:
            clause[-1] = "FROM"
        elif up in _CLAUSE_ENDS:
            clause[-1] = up
        prev = up if up is not None else (val if kind == "op" else kind)


_SCAN = re.compile(r"TableScan: (.+?)(?: projection=| partial_filters=| full_filters=| fetch=|$)", re.M)


def check_plan_scans(plan_text: str, tables) -> None:
    """Step 2: every ``TableScan`` of the logical plan is a registered table (views show as ``?table?``)."""
    names = {str(t).lower() for t in tables}
    for node in ("Dml:", "CopyTo:", "CreateExternalTable", "CreateMemoryTable", "CreateView", "DropTable", "DropView",
                 "SetVariable", "Statement:"):
        if node in plan_text:
            raise ConfigError(f"SQL plan holds {node.rstrip(':')}: {READ_ONLY_HINT}")
    for scanned in _SCAN.findall(plan_text):
        s = scanned.strip()
        if s == "?table?" or s.lower() in names:
            continue
        raise ConfigError(f"SQL reads {s!r}, which is not one of the registered tables "
                          f"({', '.join(sorted(names)) or 'none'}). {READ_ONLY_HINT}")
