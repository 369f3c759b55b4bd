"""Data in and out: CSV and JSON Lines import and export with column mappings.

    from crmcore.io import ColumnMapping, export_file, import_file
    mapping = ColumnMapping.load("customers", columns=["E-mail=email"])
    result = import_file(crm, "customers", "old-crm.csv", mapping=mapping, errors="refused.csv")
    export_file(crm, "customers", "customers.jsonl")

See docs/io.md for the columns of each kind, what wins when a row updates a stored
customer, and how a crashed import resumes.
"""

from __future__ import annotations

from crmcore.io.exporter import export_file
from crmcore.io.importer import ImportResult, Progress, Refusal, import_file
from crmcore.io.mapping import FIELDS, KINDS, ColumnMapping

__all__ = [
    "FIELDS", "KINDS", "ColumnMapping", "ImportResult", "Progress", "Refusal", "export_file", "import_file",
]
