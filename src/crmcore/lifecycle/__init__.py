"""The life of a customer record: history and as-of reads, duplicates, merge and unmerge,
privacy export and erasure, retention (see docs/data-lifecycle.md)."""
