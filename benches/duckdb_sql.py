"""Runs the benchmark's queries with DuckDB on the same Parquet files.

Usage: duckdb_sql.py DATA_DIR OUT_DIR NAME=SQL_FILE...
Prints one JSON line per query: name, seconds, rows written.
"""
import json
import os
import sys
import time

import duckdb

data, out = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute("SET threads = %d" % os.cpu_count())
con.execute(f"CREATE VIEW file_records AS SELECT * FROM read_parquet('{data}/file_records/*.parquet')")
con.execute(f"CREATE VIEW billing AS SELECT * FROM read_parquet('{data}/billing/*.parquet')")
for arg in sys.argv[3:]:
    name, path = arg.split("=", 1)
    sql = open(path).read()
    target = os.path.join(out, f"duckdb-{name}.parquet")
    started = time.perf_counter()
    con.execute(f"COPY ({sql}) TO '{target}' (FORMAT PARQUET)")
    seconds = time.perf_counter() - started
    rows = con.execute(f"SELECT count(*) FROM read_parquet('{target}')").fetchone()[0]
    print(json.dumps({"name": name, "seconds": seconds, "rows": rows}), flush=True)
