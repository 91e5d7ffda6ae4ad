"""The job queue of ``ukg2d365 worker``: Procrastinate, in the ledger's own PostgreSQL database.

Procrastinate keeps its jobs, locks and periodic defers in tables of its own (``procrastinate_*``); its
periodic tasks are deferred once per period "even with multiple workers", the database refusing a second
defer of one period (procrastinate-org/procrastinate docs/howto/advanced/cron.md, the unique
``(task_name, periodic_id, defer_timestamp)`` of ``procrastinate_periodic_defers``). This module opens the
app on the ledger's URL and creates Procrastinate's schema the first time, once, under an advisory lock, so
two workers starting together on a new database do not both apply it.
"""

from __future__ import annotations

from typing import Any

from ukg2d365.ledger.backends import MIGRATION_LOCK_SPACE, PostgresUrl, advisory_key


def _connect(url: PostgresUrl) -> Any:
    import psycopg

    kwargs = url.connect_kwargs() | {"application_name": "ukg2d365 worker"}
    return psycopg.connect(url.url, autocommit=True, **kwargs)


def ensure_schema(url: PostgresUrl) -> bool:
    """Create Procrastinate's tables unless they exist; True when this call created them."""
    import procrastinate

    key = advisory_key("procrastinate schema")
    with _connect(url) as db:
        db.execute("SELECT pg_advisory_lock(%s, %s)", (MIGRATION_LOCK_SPACE, key))
        try:
            row = db.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
            if row is not None and row[0] is not None:
                return False
            schema = procrastinate.schema.SchemaManager.get_schema()
            with db.transaction():
                db.execute(schema)
            return True
        finally:
            db.execute("SELECT pg_advisory_unlock(%s, %s)", (MIGRATION_LOCK_SPACE, key))


def describe(location: str) -> str:
    """How messages name the queue's database (never with a password)."""
    return f"PostgreSQL at {PostgresUrl(location).display}"


def open_app(location: str, *, max_connections: int) -> Any:
    """A ``procrastinate.App`` on the ledger's PostgreSQL (``location`` is ``ledger.url``), schema in place."""
    import procrastinate

    url = PostgresUrl(location)
    ensure_schema(url)
    kwargs = url.connect_kwargs() | {"application_name": "ukg2d365 worker"}
    connector = procrastinate.PsycopgConnector(conninfo=url.url, kwargs=kwargs, min_size=1,
                                               max_size=max_connections)
    return procrastinate.App(connector=connector)
