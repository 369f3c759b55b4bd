"""Storage adapters: in-memory, SQLite (the embedded default) and PostgreSQL."""
