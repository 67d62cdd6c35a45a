"""Reads a table of the lake with Delta readers no one here wrote and prints what each saw.

usage: delta_readers.py TABLE_DIR COLUMN

Prints one JSON object: the table's version and partition columns as the Python `deltalake`
package reads them; the rows and the exact sum of COLUMN (a decimal, as text) as Polars reads
the table; the same as DuckDB reads the Parquet files the Delta snapshot lists.
"""

import json
import sys
from decimal import Decimal

import duckdb
import polars as pl
from deltalake import DeltaTable

table_dir, column = sys.argv[1], sys.argv[2]
table = DeltaTable(table_dir)
files = table.file_uris()
frame = pl.read_delta(table_dir)
rows, total = duckdb.sql(f'SELECT count(*), CAST(sum({column}) AS VARCHAR) FROM read_parquet({files!r})').fetchall()[0]
print(json.dumps({
    'version': table.version(),
    'partition_columns': table.metadata().partition_columns,
    'files': len(files),
    'polars': {'rows': frame.height, 'sum': str(Decimal(str(frame[column].sum())).normalize()),
               'columns': frame.columns},
    'duckdb': {'rows': rows, 'sum': str(Decimal(total).normalize())},
}))
