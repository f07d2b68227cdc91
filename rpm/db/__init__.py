"""The store: connection pool, migrations and the TimescaleDB branch."""
