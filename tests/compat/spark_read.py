"""Reads a table of the lake with Apache Spark and Delta Lake (delta-spark) and prints what it saw.

usage: spark_read.py TABLE_DIR [VERSION]

Prints one JSON object: the latest version Spark finds (DESCRIBE HISTORY), the rows and the
exact per-record sums of `quantity` at the latest version and, with VERSION, as of that
version (time travel). A record is (product_id, contract_id, asset_id, item_mpn, tier,
category_id, period_start) for `records`, (event_id) for `events`; sums are decimal text.
"""

import glob
import json
import os
import sys

from pyspark.sql import SparkSession

table_dir = sys.argv[1]
as_of = int(sys.argv[2]) if len(sys.argv) > 2 else None
jars = sorted(glob.glob(os.path.join(sys.prefix, 'jars', '*.jar')))
spark = (
    SparkSession.builder.master('local[1]')
    .appName('usageflow-compat')
    .config('spark.jars', ','.join(jars))
    .config('spark.sql.extensions', 'io.delta.sql.DeltaSparkSessionExtension')
    .config('spark.sql.catalog.spark_catalog', 'org.apache.spark.sql.delta.catalog.DeltaCatalog')
    .config('spark.sql.session.timeZone', 'UTC')
    .config('spark.ui.enabled', 'false')
    .config('spark.driver.bindAddress', '127.0.0.1')
    .config('spark.driver.host', '127.0.0.1')
    .getOrCreate()
)
spark.sparkContext.setLogLevel('ERROR')

if 'event_id' in [f.name for f in spark.read.format('delta').load(table_dir).schema.fields]:
    key = ['event_id']
else:
    key = ['product_id', 'contract_id', 'asset_id', 'item_mpn', 'tier', 'category_id', 'period_start']


def read(version=None):
    reader = spark.read.format('delta')
    if version is not None:
        reader = reader.option('versionAsOf', version)
    frame = reader.load(table_dir)
    frame.createOrReplaceTempView('t')
    # Times as microseconds since the epoch, the lake's own unit.
    cols = ', '.join(f'CAST(unix_micros({c}) AS STRING)' if c == 'period_start' else c for c in key)
    names = ', '.join(f'{e} AS {c}' for e, c in zip(cols.split(', '), key))
    rows = spark.sql(
        f"SELECT {names}, CAST(sum(quantity) AS STRING) AS q FROM t GROUP BY {cols}"
    ).collect()
    totals = {}
    for r in rows:
        k = '|'.join('' if r[c] is None else str(r[c]) for c in key)
        totals[k] = r['q']
    return {'rows': frame.count(), 'totals': totals}


history = spark.sql(f"DESCRIBE HISTORY delta.`{table_dir}`").collect()
out = {'version': max(h['version'] for h in history), 'latest': read()}
if as_of is not None:
    out['as_of'] = read(as_of)
print(json.dumps(out))
spark.stop()
