# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""The results database: every collected run with its rows, in SQLite (a file on the controller) or PostgreSQL.

One SQL text serves both: statements are written with ``?`` placeholders, which become ``%s`` for psycopg.
Three tables, all named ``madengine_*`` so that a database shared with other tools stays readable:

- ``madengine_schema``: one row, the schema version (migrations below bring older databases up to date);
- ``madengine_runs``: one row per run id, with its first start time (the order of runs) and its source;
- ``madengine_results``: one row per (run, node, model, arguments, occurrence), the row itself as JSON
  plus the columns the baselines are looked up by.

Writers take a lock first (``BEGIN IMMEDIATE`` in SQLite, an advisory transaction lock in PostgreSQL) and
write in one transaction, so two runs collected at once are both stored whole, and a row that is already
stored with the same content is not written again.
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import traceback
from urllib.parse import unquote, urlsplit

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError, utc_now

# psycopg, imported on first use: a report without a PostgreSQL database does not pay its import (about 0.1 s)
_PSYCOPG = {}


def postgresql_library():
    """(the psycopg module or None, the traceback of its failed import or None)."""
    if not _PSYCOPG:
        try:
            import psycopg
        except ImportError:
            _PSYCOPG.update(module=None, error=traceback.format_exc())
        else:
            _PSYCOPG.update(module=psycopg, error=None)
    return _PSYCOPG["module"], _PSYCOPG["error"]


DEFAULT_NAME = "history.sqlite"
SCHEMA_VERSION = 1
# Any constant: the key of PostgreSQL's advisory lock that serialises this collection's writers.
_PG_LOCK_KEY = 0x6D6164656E67
_BUSY_TIMEOUT_S = 120
_TABLES = ("madengine_schema", "madengine_runs", "madengine_results", "madengine_series")
# Columns of madengine_results besides run_pk, in insert order.
RESULT_COLUMNS = ("host", "model", "args", "occurrence", "status", "gpu_product", "gpu_architecture", "metric",
                  "performance", "start_time", "row_hash", "row_json")
_KEY = ("host", "model", "args", "occurrence")

# Each migration brings the schema from version n-1 to n; ``{pk}`` is the dialect's identity column.
MIGRATIONS = {
    1: (
        "CREATE TABLE madengine_schema (version INTEGER NOT NULL)",
        "CREATE TABLE madengine_runs (pk {pk}, run_id TEXT NOT NULL UNIQUE, started TEXT NOT NULL,"
        " finished TEXT NOT NULL, collected TEXT NOT NULL, updated TEXT NOT NULL, source TEXT NOT NULL,"
        " title TEXT NOT NULL, row_count INTEGER NOT NULL)",
        "CREATE TABLE madengine_results (run_pk BIGINT NOT NULL REFERENCES madengine_runs (pk) ON DELETE CASCADE,"
        " host TEXT NOT NULL, model TEXT NOT NULL, args TEXT NOT NULL, occurrence INTEGER NOT NULL,"
        " status TEXT NOT NULL, gpu_product TEXT NOT NULL, gpu_architecture TEXT NOT NULL, metric TEXT NOT NULL,"
        " performance DOUBLE PRECISION, start_time TEXT NOT NULL, row_hash TEXT NOT NULL, row_json TEXT NOT NULL,"
        " PRIMARY KEY (run_pk, host, model, args, occurrence))",
        "CREATE INDEX madengine_results_series ON madengine_results (model, gpu_architecture, status)",
        # per run, the median of each series (model, args, GPU class, metric): what trends and baselines read
        "CREATE TABLE madengine_series (run_pk BIGINT NOT NULL REFERENCES madengine_runs (pk) ON DELETE CASCADE,"
        " model TEXT NOT NULL, args TEXT NOT NULL, gpu_product TEXT NOT NULL, gpu_architecture TEXT NOT NULL,"
        " metric TEXT NOT NULL, performance DOUBLE PRECISION NOT NULL, row_count INTEGER NOT NULL,"
        " PRIMARY KEY (run_pk, model, args, gpu_product, gpu_architecture, metric))",
        "CREATE INDEX madengine_series_model ON madengine_series (model)",
    ),
}


class DatabaseError(MadengineError):
    """The results database cannot be used: cannot be opened, damaged, too new, or a statement failed."""


class Location(object):
    """Where the database is: ``kind`` (sqlite or postgresql), ``target`` (path or URL) and ``display``,
    the same without a password (the only form that may appear in messages, results and the report)."""

    def __init__(self, kind, target, display, secrets=()):
        self.kind = kind
        self.target = target
        self.display = display
        self.secrets = [s for s in secrets if s]


def parse_location(value, output_dir):
    """The database ``value`` names: empty is ``<output_dir>/history.sqlite``, a ``postgresql://`` (or
    ``postgres://``) URL is PostgreSQL, anything else a SQLite file (relative to ``output_dir``)."""
    value = (value or "").strip()
    if not value:
        return Location("sqlite", os.path.join(output_dir, DEFAULT_NAME), os.path.join(output_dir, DEFAULT_NAME))
    if "://" not in value:
        path = os.path.join(output_dir, os.path.expanduser(value))
        return Location("sqlite", path, path)
    scheme = value.split("://", 1)[0].lower()
    if scheme not in ("postgresql", "postgres"):
        raise MadengineError("The results database must be a SQLite file path or a postgresql:// URL, not a %s:// URL."
                             % scheme)
    try:
        parts = urlsplit(value)
        password = parts.password
        netloc = parts.netloc
    except ValueError as exc:
        raise MadengineError("The results database URL is malformed: %s." % exc)
    display = value
    if password is not None:
        userinfo, hostinfo = netloc.rsplit("@", 1)
        display = value.replace(netloc, "%s:********@%s" % (userinfo.split(":", 1)[0], hostinfo), 1)
    return Location("postgresql", value, display, secrets=(password, unquote(password or "")))


class _Sqlite(object):
    name = "sqlite"
    pk = "INTEGER PRIMARY KEY AUTOINCREMENT"

    @staticmethod
    def connect(location, read_only):
        path = location.target
        if os.path.isdir(path):
            raise MadengineError("is a directory")
        if not os.path.isdir(os.path.dirname(path) or "."):
            raise MadengineError("is in a directory that does not exist")
        if read_only:
            conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        else:
            conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    @staticmethod
    def sql(text):
        return text

    @staticmethod
    def begin_write(cursor):
        cursor.execute("BEGIN IMMEDIATE")

    @staticmethod
    def any_of(column):
        return "%s IN (SELECT value FROM json_each(?))" % column

    @staticmethod
    def list_param(values):
        return json.dumps(list(values))

    @staticmethod
    def tables(cursor):
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return set(row[0] for row in cursor.fetchall())


class _Postgres(object):
    name = "postgresql"
    pk = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"

    @staticmethod
    def connect(location, read_only):
        psycopg = postgresql_library()[0]
        if psycopg is None:
            raise MadengineError("needs the psycopg Python library on the controller")
        extra = dict(options="-c default_transaction_read_only=on") if read_only else {}  # check mode
        return psycopg.connect(location.target, autocommit=True, connect_timeout=15,
                               application_name="rocm.madengine", **extra)

    @staticmethod
    def sql(text):
        return text.replace("?", "%s")

    @staticmethod
    def begin_write(cursor):
        cursor.execute("BEGIN")
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK_KEY,))

    @staticmethod
    def any_of(column):
        return "%s = ANY(CAST(? AS TEXT[]))" % column

    @staticmethod
    def list_param(values):
        return list(values)

    @staticmethod
    def tables(cursor):
        cursor.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
        return set(row[0] for row in cursor.fetchall())


def _db_errors():
    errors = (sqlite3.Error,)
    psycopg = _PSYCOPG.get("module")  # only a database opened through psycopg can raise its errors
    if psycopg is not None:
        errors += (psycopg.Error,)
    return errors


class ResultsDB(object):
    """An open results database whose schema is known to be usable (see ``open_db``)."""

    def __init__(self, location, conn, dialect, version, read_only):
        self.location = location
        self.conn = conn
        self.dialect = dialect
        self.version = version  # 0: no schema yet (only in check mode: nothing is created then)
        self.read_only = read_only

    # ---- plumbing ----------------------------------------------------------------------------------

    def _fail(self, exc, doing):
        text = _scrub(exc, self.location)
        if "malformed" in text:  # SQLite found a damaged page on its way: the transaction was rolled back
            return DatabaseError("Results database %s is corrupt (%s): %s failed."
                                 % (self.location.display, text, doing))
        return DatabaseError("Results database %s: %s failed: %s." % (self.location.display, doing, text))

    def _query(self, text, params=(), doing="reading"):
        cursor = self.conn.cursor()
        try:
            cursor.execute(self.dialect.sql(text), tuple(params))
            return cursor.fetchall() if cursor.description else []
        except _db_errors() as exc:
            raise self._fail(exc, doing)
        finally:
            cursor.close()

    def close(self):
        if self.conn is None:
            return
        try:
            self.conn.close()
        except _db_errors():
            pass

    @property
    def usable(self):
        """False when there is no schema yet (a new database in check mode): nothing to read."""
        return self.version == SCHEMA_VERSION

    # ---- reading -------------------------------------------------------------------------------------

    def runs(self):
        """[(pk, run_id, started, source)] of every stored run."""
        if not self.usable:
            return []
        return self._query("SELECT pk, run_id, started, source FROM madengine_runs")

    def _latest(self, table, host, series, models, before, runs_per_series):
        """Rows of ``table`` of the given models in the ``runs_per_series`` latest runs before ``before`` (a
        (started, pk) key) of each ``series``, as (run_pk, host, model, args, gpu_product, gpu_architecture,
        metric, performance)."""
        only_success = " AND r.status = 'SUCCESS' AND r.performance IS NOT NULL" if table == "madengine_results" else ""
        text = ("SELECT run_pk, host, model, args, gpu_product, gpu_architecture, metric, performance FROM ("
                " SELECT r.run_pk, %s AS host, r.model, r.args, r.gpu_product, r.gpu_architecture, r.metric,"
                " r.performance, DENSE_RANK() OVER (PARTITION BY %s ORDER BY u.started DESC, u.pk DESC) AS recent"
                " FROM %s r JOIN madengine_runs u ON u.pk = r.run_pk WHERE %s%s"
                " AND (u.started < ? OR (u.started = ? AND u.pk < ?))"
                ") ranked WHERE recent <= ?" % (host, series, table, self.dialect.any_of("r.model"), only_success))
        params = (self.dialect.list_param(sorted(models)), before[0], before[0], before[1], runs_per_series)
        return self._query(text, params)

    def series_medians(self, models, before, runs_per_series):
        """For each series (model, args, GPU product and architecture, metric) of the given models, its median
        in each of its ``runs_per_series`` latest runs before ``before`` (a (started, pk) key). Returns tuples
        (run_pk, "", model, args, gpu_product, gpu_architecture, metric, median)."""
        if not self.usable or not models:
            return []
        return self._latest("madengine_series", "''", "r.model, r.args, r.gpu_product, r.gpu_architecture,"
                            " r.metric", models, before, runs_per_series)

    def node_rows(self, models, before):
        """For each series and node, the SUCCESS rows with a figure of its latest run before ``before``. Returns
        tuples (run_pk, host, model, args, gpu_product, gpu_architecture, metric, performance)."""
        if not self.usable or not models:
            return []
        return self._latest("madengine_results", "r.host", "r.model, r.args, r.gpu_product, r.gpu_architecture,"
                            " r.metric, r.host", models, before, 1)

    def run_rows(self, run_id):
        """The SUCCESS rows with a figure of one stored run (a pinned baseline), as ``node_rows`` returns them;
        an unknown run id is an error."""
        found = self._query("SELECT pk FROM madengine_runs WHERE run_id = ?", (run_id,)) if self.usable else []
        if not found:
            raise MadengineError("The baseline run %s is not in the results database %s."
                                 % (run_id, self.location.display))
        return self._query("SELECT run_pk, host, model, args, gpu_product, gpu_architecture, metric, performance"
                           " FROM madengine_results WHERE run_pk = ? AND status = 'SUCCESS'"
                           " AND performance IS NOT NULL", (found[0][0],))

    def stored_hashes(self, run_id):
        """{row key: row hash} of a stored run (empty when the run is not stored)."""
        if not self.usable:
            return {}
        rows = self._query("SELECT r.host, r.model, r.args, r.occurrence, r.row_hash FROM madengine_results r"
                           " JOIN madengine_runs u ON u.pk = r.run_pk WHERE u.run_id = ?", (run_id,))
        return dict(((h, m, a, int(o)), digest) for h, m, a, o, digest in rows)

    def pending(self, runs):
        """How many rows of ``runs`` (StoredRun) storing them would add or change."""
        return sum(len(run.changed_rows(self.stored_hashes(run.run_id))) for run in runs)

    # ---- writing -------------------------------------------------------------------------------------

    def store(self, runs, title=""):
        """Store ``runs`` in one transaction; returns (runs added, rows written). Rows already stored with the
        same content are not written again; nothing is ever deleted."""
        cursor = self.conn.cursor()
        runs_added = rows_written = 0
        try:
            self.dialect.begin_write(cursor)
            for run in runs:
                added, written = self._store_run(cursor, run, title)
                runs_added += added
                rows_written += written
            cursor.execute("COMMIT")
        except _db_errors() as exc:
            _rollback(cursor)
            raise self._fail(exc, "storing the run")
        except BaseException:
            _rollback(cursor)
            raise
        finally:
            cursor.close()
        return runs_added, rows_written

    def _store_run(self, cursor, run, title):
        sql = self.dialect.sql
        now = utc_now()
        cursor.execute(sql("INSERT INTO madengine_runs (run_id, started, finished, collected, updated, source, title,"
                           " row_count) VALUES (?, ?, ?, ?, ?, ?, ?, 0) ON CONFLICT (run_id) DO NOTHING"),
                       (run.run_id, run.started or "", run.finished or "", now, now, run.source, title))
        added = cursor.rowcount == 1
        cursor.execute(sql("SELECT pk FROM madengine_runs WHERE run_id = ?"), (run.run_id,))
        run_pk = cursor.fetchone()[0]
        cursor.execute(sql("SELECT host, model, args, occurrence, row_hash FROM madengine_results WHERE run_pk = ?"),
                       (run_pk,))
        stored = dict(((h, m, a, int(o)), digest) for h, m, a, o, digest in cursor.fetchall())
        rows = run.changed_rows(stored)
        if rows:
            names = ", ".join(RESULT_COLUMNS)
            updates = ", ".join("%s = excluded.%s" % (c, c) for c in RESULT_COLUMNS if c not in _KEY)
            cursor.executemany(sql("INSERT INTO madengine_results (run_pk, %s) VALUES (?, %s) ON CONFLICT"
                                   " (run_pk, host, model, args, occurrence) DO UPDATE SET %s"
                                   % (names, ", ".join("?" * len(RESULT_COLUMNS)), updates)),
                               [(run_pk,) + tuple(row) for row in rows])
            cursor.execute(sql("UPDATE madengine_runs SET updated = ?, row_count = (SELECT COUNT(*) FROM"
                               " madengine_results WHERE run_pk = ?) WHERE pk = ?"), (now, run_pk, run_pk))
            self._store_series(cursor, run_pk)
        return int(added), len(rows)

    def _store_series(self, cursor, run_pk):
        """Make the run's series medians again from its stored rows."""
        sql = self.dialect.sql
        cursor.execute(sql("SELECT model, args, gpu_product, gpu_architecture, metric, performance FROM"
                           " madengine_results WHERE run_pk = ? AND status = 'SUCCESS' AND performance IS NOT NULL"),
                       (run_pk,))
        groups = {}
        for record in cursor.fetchall():
            groups.setdefault(tuple(record[:5]), []).append(record[5])
        cursor.execute(sql("DELETE FROM madengine_series WHERE run_pk = ?"), (run_pk,))
        if groups:
            cursor.executemany(sql("INSERT INTO madengine_series (run_pk, model, args, gpu_product, gpu_architecture,"
                                   " metric, performance, row_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
                               [(run_pk,) + key + (statistics.median(values), len(values))
                                for key, values in groups.items()])


def _rollback(cursor):
    try:
        cursor.execute("ROLLBACK")
    except _db_errors():
        pass


def _scrub(exc, location):
    """The driver's message, on one line, without the password (libpq messages do not quote it; be sure)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    for secret in location.secrets:
        text = text.replace(secret, "********")
    return text.rstrip(".")


# ---- opening: the checks that come before anything is written --------------------------------------------

def open_db(location, check_mode=False):
    """Open the database and bring its schema up to date; every problem is a MadengineError naming the database
    (cannot be opened, corrupt, not ours, or written by a newer version), raised before anything is written.

    In check mode nothing is created: a missing SQLite file or a database without the schema opens empty."""
    dialect = _Postgres if location.kind == "postgresql" else _Sqlite
    if check_mode and dialect is _Sqlite and not os.path.exists(location.target):
        return ResultsDB(location, None, dialect, 0, True)
    what = "Results database %s" % location.display
    try:
        conn = dialect.connect(location, read_only=check_mode)
    except MadengineError as exc:
        raise DatabaseError("%s cannot be opened: it %s." % (what, exc))
    except _db_errors() as exc:
        raise DatabaseError("%s cannot be opened: %s." % (what, _scrub(exc, location)))
    try:
        version = _prepare(conn, dialect, check_mode, what, location)
    except BaseException:
        try:
            conn.close()
        except _db_errors():
            pass
        raise
    return ResultsDB(location, conn, dialect, version, check_mode)


def _prepare(conn, dialect, check_mode, what, location):
    cursor = conn.cursor()
    try:
        try:
            version = _schema_version(cursor, dialect, what)
            if version > SCHEMA_VERSION:
                raise MadengineError("%s has schema version %d, newer than this rocm.madengine reads (%d); upgrade the"
                                     " collection or use another database." % (what, version, SCHEMA_VERSION))
            if version < SCHEMA_VERSION and not check_mode:
                dialect.begin_write(cursor)
                try:
                    version = _migrate(cursor, dialect, _schema_version(cursor, dialect, what))
                    cursor.execute("COMMIT")
                except BaseException:
                    _rollback(cursor)
                    raise
            return version
        except MadengineError as exc:
            if str(exc).startswith(what):
                raise DatabaseError(str(exc))
            raise DatabaseError("%s %s." % (what, exc))
        except _db_errors() as exc:
            raise DatabaseError("%s cannot be used: %s." % (what, _scrub(exc, location)))
    finally:
        cursor.close()


def _schema_version(cursor, dialect, what):
    """0 for a database without our tables; the stored version otherwise (every inconsistency is an error)."""
    present = set(_TABLES) & dialect.tables(cursor)
    if not present:
        return 0
    if "madengine_schema" not in present:
        raise MadengineError("has the tables %s but no madengine_schema table: it is damaged or not a results"
                             " database of rocm.madengine" % ", ".join(sorted(present)))
    cursor.execute("SELECT version FROM madengine_schema")
    found = cursor.fetchall()
    if len(found) != 1 or not isinstance(found[0][0], int) or found[0][0] < 1:
        raise MadengineError("has an unreadable schema version (%s): it is damaged"
                             % (", ".join(repr(row[0]) for row in found) or "no row"))
    version = found[0][0]
    if version <= SCHEMA_VERSION:
        missing = [t for t in _TABLES if t not in present]
        if missing:
            raise MadengineError("lacks the table%s %s of schema version %d: it is damaged"
                                 % ("s" if len(missing) > 1 else "", ", ".join(missing), version))
    return version


def _migrate(cursor, dialect, version):
    """Apply every migration after ``version``, inside the caller's write transaction."""
    for target in range(version + 1, SCHEMA_VERSION + 1):
        for statement in MIGRATIONS[target]:
            cursor.execute(statement.format(pk=dialect.pk))
        if target == 1:
            cursor.execute(dialect.sql("INSERT INTO madengine_schema (version) VALUES (?)"), (target,))
        else:
            cursor.execute(dialect.sql("UPDATE madengine_schema SET version = ?"), (target,))
    return SCHEMA_VERSION
