"""crmcore on DuckDB: an example of a third-party storage plugin with its own SQL dialect.

Installed like any plugin (`pip install crmcore-duckdb`), it registers the URL scheme
`duckdb` through the `crmcore` entry-point group: `crmcore.open("duckdb:///crm.duckdb")`.
"""

from crmcore_duckdb.dialect import DUCKDB, DuckDB
from crmcore_duckdb.storage import DuckDBStorage

__all__ = ["DUCKDB", "DuckDB", "DuckDBStorage"]
