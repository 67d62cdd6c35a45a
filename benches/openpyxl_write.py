"""Writes N usage records (TR schema, 17 columns, values as text) with openpyxl's write-only
workbook, the way vendors' Connect SDK scripts do, and prints `RESULT <seconds> <peak_rss_mib>`."""
import resource
import sys
import time

from openpyxl import Workbook

COLUMNS = ["record_id", "record_note", "item_search_criteria", "item_search_value", "amount", "quantity",
           "start_time_utc", "end_time_utc", "asset_search_criteria", "asset_search_value", "item_name",
           "item_mpn", "item_precision", "item_unit", "category_id", "asset_recon_id", "tier"]


def row(i):
    day = 1 + i % 28
    return [f"UR-2026-11-0001-0002-{i // 10000:04d}-{i % 10000:04d}", "", "item.mpn", f"NIM-ITEM-{i % 5}",
            f"{i % 997}.{i % 100:02d}", f"{i % 1013}.{i % 10000:04d}", f"2026-11-{day:02d} {i % 24:02d}:00:00",
            f"2026-11-{day:02d} {i % 24:02d}:59:59", "asset.id", f"AS-1000-{i % 9973:04d}-{i % 1200:04d}", "", "", "",
            "", "compute", "", str(i % 3)]


def main():
    n = int(sys.argv[1])
    out = sys.argv[2]
    start = time.perf_counter()
    book = Workbook(write_only=True)
    general = book.create_sheet("general")
    general.append(["attribute_id", "attribute_value"])
    general.append(["report_id", "UF-2026-11-0001-0002"])
    categories = book.create_sheet("categories")
    categories.append(["category_id", "category_name", "category_description"])
    categories.append(["compute", "Compute", ""])
    records = book.create_sheet("records")
    records.append(COLUMNS)
    for i in range(n):
        records.append(row(i))
    book.save(out)
    seconds = time.perf_counter() - start
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"RESULT {seconds:.3f} {rss_mib:.0f}")


if __name__ == "__main__":
    main()
