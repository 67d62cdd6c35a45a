#!/usr/bin/env python3
"""Writes the sample catalogue's assets.csv (deterministic: same output every run).

Usage: python3 config/catalog/generate_assets.py > config/catalog/assets.csv
"""
import csv
import random
import sys

rng = random.Random(20261125)
# (product, contract, marketplace, hub, count, reconciliation parameter)
plan = [
    ("PRD-100-100-001", "CRD-10001-10001-00001", "MP-10001", "HB-0001-0001", 900, "instance_uuid"),
    ("PRD-100-100-001", "CRD-10001-10003-00001", "MP-10003", "HB-0001-0002", 300, "instance_uuid"),
    ("PRD-200-200-002", "CRD-20001-10001-00001", "MP-10001", "HB-0001-0001", 1200, "iccid"),
    ("PRD-300-300-003", "CRD-30001-10002-00002", "MP-10002", "HB-0002-0001", 500, "tenant_id"),
    ("PRD-300-300-004", "CRD-30001-10002-00002", "MP-10002", "HB-0002-0001", 400, "tenant_id"),
]
first = ["Alpine", "Baltic", "Cobalt", "Delta", "Ember", "Fjord", "Granite", "Harbor", "Iris", "Juniper",
         "Kite", "Lumen", "Meridian", "Nova", "Orchid", "Pinnacle", "Quarry", "Riverside", "Summit", "Tidal"]
second = ["Logistics", "Analytics", "Bakery", "Clinic", "Motors", "Labs", "Foods", "Energy", "Retail", "Studios"]
suffix = ["GmbH", "Ltd", "Inc", "AG", "LLC", "plc"]

out = csv.writer(sys.stdout, lineterminator="\n")
out.writerow(["id", "product", "contract", "marketplace", "hub", "external_id", "external_uid", "recon_id",
              "params", "customer_id", "customer_name", "tier1_id", "tier1_name", "tier2_id", "tier2_name",
              "status", "environment", "terminated_at"])
n = 0
for product, contract, marketplace, hub, count, param in plan:
    for _ in range(count):
        n += 1
        asset = f"AS-{1000 + n // 10000:04d}-{(n * 7919) % 10000:04d}-{n % 10000:04d}"
        if param == "iccid":
            value = f"8949{rng.randrange(10**15, 10**16)}"
        elif param == "instance_uuid":
            value = "%08x-%04x-%04x-%04x-%012x" % tuple(rng.getrandbits(b) for b in (32, 16, 16, 16, 48))
        else:
            value = f"tenant-{rng.randrange(10**6, 10**7)}"
        customer = f"TA-{2000 + n:05d}"
        name = f"{rng.choice(first)} {rng.choice(second)} {rng.choice(suffix)}"
        tiered = rng.random() < 0.4
        tier2 = tiered and rng.random() < 0.5
        status = "terminated" if rng.random() < 0.02 else ("suspended" if rng.random() < 0.03 else "active")
        out.writerow([
            asset, product, contract, marketplace, hub, str(100000 + n), f"uid-{n:06d}", value,
            f"{param}={value}", customer, name,
            "RA-700-001" if tiered else "", "Blue Harbor IT" if tiered else "",
            "RA-700-002" if tier2 else "", "Kestrel Systems" if tier2 else "",
            status, "production", "2026-10-31" if status == "terminated" else "",
        ])
