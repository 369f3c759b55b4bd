"""PostgreSQL adapter tests, against the server named by CRMCORE_TEST_POSTGRES_URL."""
