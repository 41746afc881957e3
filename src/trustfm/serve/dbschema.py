"""Creating the service's tables when replicas start at the same moment.

``MetaData.create_all`` checks whether each table exists, then creates it: two processes doing so at once both
see it missing and one fails (PostgreSQL: a unique violation in its catalogue; SQLite: "table already exists").
"""

from __future__ import annotations

import time

# pg_advisory_xact_lock's key for trustfm's DDL ("trustfm" in ASCII)
_DDL_LOCK = 0x7472757374666D


def create_tables(metadata, engine, *, tries: int = 5) -> None:
    """``metadata.create_all(engine)``, safe when other processes create the same tables concurrently.

    PostgreSQL: under a transaction-scoped advisory lock, so creators take turns and the later ones find the
    tables. Elsewhere (SQLite): tried again when a concurrent creator won (the next try finds the tables).
    """
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _DDL_LOCK})
            metadata.create_all(connection)
        return
    for attempt in range(tries):
        try:
            metadata.create_all(engine)
            return
        except (IntegrityError, OperationalError, ProgrammingError):
            if attempt == tries - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
