"""The public SQL dialect layer: what segments, scores and reports compile through.

A storage plugin that speaks SQL gives its unit of work a `dialect` attribute
holding a `Dialect`; see `crmcore.sql.dialect` and docs/plugins.md.
"""

from crmcore.sql.dialect import (
    BUILTIN,
    POSTGRESQL,
    SQLITE,
    Bind,
    Cursor,
    Dialect,
    PostgreSQL,
    SQLite,
    Unsupported,
    dialect_of,
)

__all__ = [
    "BUILTIN", "POSTGRESQL", "SQLITE", "Bind", "Cursor", "Dialect", "PostgreSQL", "SQLite",
    "Unsupported", "dialect_of",
]
