"""The results database on SQLite and on a real PostgreSQL server: schema, storing once, concurrent writers,
migrations, and every kind of bad database named before anything is written."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap

import pytest
from fleet_rows import node_rows

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark import history as _history
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark import results_db as _db
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path):
    if request.param == "sqlite":
        return _db.parse_location("", str(tmp_path))
    server = request.getfixturevalue("postgres")
    return _db.parse_location(server.url(server.create_database()), str(tmp_path))


def runs_of(run_id, perf=100.0, hosts=("node1", "node2")):
    rows = []
    for host in hosts:
        rows.extend(dict(r, run_id=run_id) for r in node_rows(host, perf=perf))
    return _history.runs_of_rows(rows, run_id, "2026-11-22T10:00:00Z")


def count(db, table):
    return db._query("SELECT COUNT(*) FROM %s" % table)[0][0]


# ---- where the database is ------------------------------------------------------------------------

def test_locations(tmp_path):
    default = _db.parse_location("", "/r")
    assert (default.kind, default.target, default.display) == ("sqlite", "/r/history.sqlite", "/r/history.sqlite")
    assert _db.parse_location("lab.sqlite", "/r").target == "/r/lab.sqlite"
    assert _db.parse_location("/abs/h.db", "/r").target == "/abs/h.db"
    pg = _db.parse_location("postgresql://bench:s%40cret@db.lab:5433/results?sslmode=require", "/r")
    assert pg.kind == "postgresql" and pg.display == "postgresql://bench:********@db.lab:5433/results?sslmode=require"
    assert pg.secrets == ["s%40cret", "s@cret"]
    nopass = _db.parse_location("postgres://bench@db.lab/results", "/r")
    assert nopass.kind == "postgresql" and nopass.display == nopass.target and nopass.secrets == []
    with pytest.raises(MadengineError, match=r"a SQLite file path or a postgresql:// URL, not a mysql:// URL"):
        _db.parse_location("mysql://u:p@h/db", "/r")


# ---- schema, storing once, updates --------------------------------------------------------------------

def test_new_database_gets_the_schema_and_stores_a_run_once(location):
    db = _db.open_db(location)
    try:
        assert db.version == _db.SCHEMA_VERSION and db.runs() == []
        assert db.store(runs_of("run-1")) == (1, 12)
        assert db.store(runs_of("run-1")) == (0, 0)  # collected twice, stored once
        assert count(db, "madengine_results") == 12 and [r[1] for r in db.runs()] == ["run-1"]
        changed = runs_of("run-1")
        changed[0].records[0] = changed[0].records[0][:8] + (1.5,) + changed[0].records[0][9:10] + (
            "0" * 32, '{"changed":1}')
        assert db.store(changed) == (0, 1) and count(db, "madengine_results") == 12
        assert db.pending(runs_of("run-1")) == 1 and db.pending(runs_of("run-2")) == 12
    finally:
        db.close()
    again = _db.open_db(location)  # an existing database of this version opens as it is
    try:
        assert [r[1] for r in again.runs()] == ["run-1"] and again.stored_hashes("run-1")
    finally:
        again.close()


def test_history_is_the_latest_runs_per_series_before_a_run(location):
    db = _db.open_db(location)
    try:
        for number in range(1, 6):
            rows = [dict(r, run_id="r%d" % number, start_time="2026-11-0%dT10:00:00Z" % number)
                    for host in ("node1", "node2") for r in node_rows(host, perf=100.0 + number + (host == "node2"))]
            db.store(_history.runs_of_rows(rows, "r%d" % number, "x"))
        runs = dict((run_id, (started, pk)) for pk, run_id, started, _source in db.runs())
        by_run = dict((pk, run_id) for run_id, (_s, pk) in runs.items())
        # one median per run and series: node1 has 100+n, node2 101+n
        found = db.series_medians({"dummy"}, runs["r5"], runs_per_series=2)
        assert sorted((by_run[r[0]], r[1], r[2], r[7]) for r in found) == [("r3", "", "dummy", 103.5),
                                                                           ("r4", "", "dummy", 104.5)]
        assert [r[7] for r in db.series_medians({"dummy"}, runs["r4"], runs_per_series=1)] == [103.5]
        assert db.series_medians({"dummy"}, runs["r1"], runs_per_series=3) == []  # a run is not its own history
        assert len(db.series_medians({"dummy", "dummy_multi_1"}, (runs["r5"][0] + "~", 0), 10)) == 10
        # per node: the rows of the latest earlier run
        nodes = db.node_rows({"dummy"}, runs["r3"])
        assert sorted((by_run[r[0]], r[1], r[7]) for r in nodes) == [("r2", "node1", 102.0), ("r2", "node2", 103.0)]
        pinned = db.run_rows("r2")
        assert len(pinned) == 12 and set(r[0] for r in pinned) == {runs["r2"][1]}
        with pytest.raises(MadengineError, match="The baseline run nope is not in the results database"):
            db.run_rows("nope")
        # a changed row changes its run's median
        rows = [dict(r, run_id="r5", start_time="2026-11-05T10:00:00Z") for r in node_rows("node1", perf=205.0)]
        assert db.store(_history.runs_of_rows(rows[:1], "r5", "x")) == (0, 1)
        after = db.series_medians({"dummy"}, (runs["r5"][0] + "~", 0), runs_per_series=1)
        assert [r[7] for r in after] == [(205.0 + 106.0) / 2]
    finally:
        db.close()


def test_check_mode_creates_nothing(location, tmp_path):
    db = _db.open_db(location, check_mode=True)
    try:
        assert db.version == 0 and not db.usable and db.runs() == []
        assert db.pending(runs_of("run-1")) == 12
    finally:
        db.close()
    if location.kind == "sqlite":
        assert not os.path.exists(location.target)
    else:
        real = _db.open_db(location)
        try:
            assert real.version == _db.SCHEMA_VERSION  # the schema was made now, not by the check
        finally:
            real.close()


# ---- two writers at once ------------------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import sys, time
    sys.path[:0] = [sys.argv[1], sys.argv[2]]
    from fleet_rows import node_rows
    from ansible_collections.rocm.madengine.plugins.module_utils.benchmark import history, results_db
    location = results_db.parse_location(sys.argv[3], sys.argv[4])
    run_id = sys.argv[5]
    rows = [dict(r, run_id=run_id) for n in range(150) for r in node_rows("node%03d" % n)]
    runs = history.runs_of_rows(rows, run_id, "2026-11-22T10:00:00Z")
    while time.time() < float(sys.argv[6]):
        time.sleep(0.01)
    db = results_db.open_db(location)
    print(db.store(runs))
""")


def test_two_processes_collecting_at_once_lose_nothing(location, tmp_path):
    """A new database, two writers starting together (schema creation races too), then the same run twice."""
    import time

    installed = os.environ["MADCI_INSTALLED"]
    helpers = os.path.join(os.path.dirname(__file__), "..", "..")
    target = location.target
    for runs in (("run-a", "run-b"), ("run-c", "run-c")):
        start = time.time() + 1.5
        procs = [subprocess.Popen([sys.executable, "-c", WRITER, installed, helpers, target, str(tmp_path), run_id,
                                   str(start)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for run_id in runs]
        outputs = [proc.communicate(timeout=300) for proc in procs]
        assert [proc.returncode for proc in procs] == [0, 0], outputs
        if runs[0] == runs[1]:
            assert sorted(out for out, _err in outputs) == ["(0, 0)\n", "(1, 900)\n"]
        else:
            assert [out for out, _err in outputs] == ["(1, 900)\n", "(1, 900)\n"]
    db = _db.open_db(location)
    try:
        assert sorted(r[1] for r in db.runs()) == ["run-a", "run-b", "run-c"]
        assert count(db, "madengine_results") == 2700
        assert db._query("SELECT version FROM madengine_schema") == [(_db.SCHEMA_VERSION,)]
    finally:
        db.close()


# ---- migrations ---------------------------------------------------------------------------------------

def test_an_older_schema_is_migrated_in_one_transaction(location, monkeypatch):
    db = _db.open_db(location)
    db.store(runs_of("run-1"))
    db.close()
    broken = dict(_db.MIGRATIONS)
    broken[2] = ("ALTER TABLE madengine_runs ADD COLUMN note TEXT NOT NULL DEFAULT ''", "THIS IS NOT SQL")
    monkeypatch.setattr(_db, "MIGRATIONS", broken)
    monkeypatch.setattr(_db, "SCHEMA_VERSION", 2)
    with pytest.raises(_db.DatabaseError, match=r"cannot be used: .*syntax error"):
        _db.open_db(location)
    db = _db.open_db(location, check_mode=True)  # still version 1, without the half-made column
    try:
        assert db.version == 1 and not db.usable
        with pytest.raises(_db.DatabaseError, match="note"):
            db._query("SELECT note FROM madengine_runs")
    finally:
        db.close()
    fixed = dict(broken)
    fixed[2] = broken[2][:1]
    monkeypatch.setattr(_db, "MIGRATIONS", fixed)
    db = _db.open_db(location)
    try:
        assert db.version == 2 and db._query("SELECT version FROM madengine_schema") == [(2,)]
        assert db._query("SELECT run_id, note FROM madengine_runs") == [("run-1", "")]
        assert count(db, "madengine_results") == 12
    finally:
        db.close()


# ---- bad databases --------------------------------------------------------------------------------------

def sqlite_at(tmp_path, name="history.sqlite"):
    return _db.parse_location(name, str(tmp_path))


def test_a_newer_schema_is_refused_and_left_alone(location):
    db = _db.open_db(location)
    db.store(runs_of("run-1"))
    db._query("UPDATE madengine_schema SET version = 99", doing="test")
    db.close()
    before = open(location.target, "rb").read() if location.kind == "sqlite" else None
    with pytest.raises(_db.DatabaseError) as caught:
        _db.open_db(location)
    assert str(caught.value) == ("Results database %s has schema version 99, newer than this rocm.madengine reads"
                                 " (1); upgrade the collection or use another database." % location.display)
    if before is not None:
        assert open(location.target, "rb").read() == before


def test_damaged_schemas_are_named(location):
    db = _db.open_db(location)
    db._query("DELETE FROM madengine_schema", doing="test")
    db.close()
    with pytest.raises(_db.DatabaseError, match=r"has an unreadable schema version \(no row\): it is damaged"):
        _db.open_db(location)


def test_tables_without_a_schema_table_are_not_ours(location):
    db = _db.open_db(location)
    db._query("DROP TABLE madengine_schema", doing="test")
    db.close()
    with pytest.raises(_db.DatabaseError, match="has the tables madengine_results, madengine_runs, madengine_series"
                                                " but no madengine_schema table: it is damaged or not a results"
                                                " database"):
        _db.open_db(location)


def test_sqlite_files_that_are_not_databases(tmp_path):
    garbage = tmp_path / "history.sqlite"
    garbage.write_bytes(b"this is a perf.csv, not a database\n" * 100)
    with pytest.raises(_db.DatabaseError, match=r"Results database .*history.sqlite cannot be used: file is not a"
                                                r" database\."):
        _db.open_db(sqlite_at(tmp_path))
    assert garbage.read_bytes() == b"this is a perf.csv, not a database\n" * 100
    (tmp_path / "dir.sqlite").mkdir()
    with pytest.raises(_db.DatabaseError, match=r"dir.sqlite cannot be opened: it is a directory\."):
        _db.open_db(sqlite_at(tmp_path, "dir.sqlite"))
    with pytest.raises(_db.DatabaseError, match=r"cannot be opened: it is in a directory that does not exist\."):
        _db.open_db(sqlite_at(tmp_path, "nowhere/h.sqlite"))


def test_a_sqlite_file_with_damaged_pages_is_named_and_left_as_it_is(tmp_path):
    location = sqlite_at(tmp_path)
    db = _db.open_db(location)
    for number in range(5):
        db.store(runs_of("run-%d" % number, hosts=["node%03d" % n for n in range(40)]))
    db.close()
    data = bytearray(open(location.target, "rb").read())
    page = 4096
    assert len(data) > 20 * page
    data[10 * page:14 * page] = b"\xff" * (4 * page)  # index and table pages in the middle
    with open(location.target, "wb") as handle:
        handle.write(bytes(data))
    db = _db.open_db(location)
    try:
        with pytest.raises(_db.DatabaseError) as caught:
            db.store(runs_of("run-0", hosts=["node%03d" % n for n in range(40)]))
    finally:
        db.close()
    assert str(caught.value) == ("Results database %s is corrupt (database disk image is malformed): storing the run"
                                 " failed." % location.target)
    assert open(location.target, "rb").read() == bytes(data)


def test_postgresql_connection_problems_never_show_the_password(postgres, tmp_path):
    wrong = _db.parse_location(postgres.url(password="Wr0ng-Pa55"), str(tmp_path))
    with pytest.raises(_db.DatabaseError) as caught:
        _db.open_db(wrong)
    message = str(caught.value)
    assert message.startswith("Results database postgresql://madci:********@127.0.0.1:%d/postgres cannot be opened:"
                              % postgres.port)
    assert "password authentication failed" in message and "Wr0ng-Pa55" not in message
    closed = _db.parse_location("postgresql://madci:Wr0ng-Pa55@127.0.0.1:1/results", str(tmp_path))
    with pytest.raises(_db.DatabaseError, match=r"127.0.0.1:1/results cannot be opened: .*(refused|failed)") as caught:
        _db.open_db(closed)
    assert "Wr0ng-Pa55" not in str(caught.value)
    missing = _db.parse_location(postgres.url("no_such_database"), str(tmp_path))
    with pytest.raises(_db.DatabaseError, match='database "no_such_database" does not exist') as caught:
        _db.open_db(missing)
    assert postgres.password not in str(caught.value)


def test_sqlite_rollback_leaves_nothing_of_a_failed_store(tmp_path):
    location = sqlite_at(tmp_path)
    db = _db.open_db(location)
    runs = runs_of("run-1")
    runs[0].records.append(runs[0].records[0][:4] + (None,) + runs[0].records[0][5:])  # NOT NULL status
    with pytest.raises(_db.DatabaseError, match="storing the run failed: NOT NULL constraint failed"):
        db.store(runs)
    assert db.runs() == [] and count(db, "madengine_results") == 0
    db.close()
    assert sqlite3.connect(location.target).execute("SELECT COUNT(*) FROM madengine_runs").fetchone() == (0,)
