"""``robustprune zoo``: list the reference models shipped with robustprune."""

from __future__ import annotations

import argparse
import json

HELP = "List the reference models shipped with robustprune."
EXAMPLES = """examples:
  robustprune zoo
  robustprune zoo --json"""


def add_parser(add) -> None:
    p = add("zoo", HELP, EXAMPLES)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robustprune import zoo

    manifest = zoo.manifest()
    rows = [{"name": n, "test_accuracy": manifest.get(n, {}).get("test_accuracy")} for n in zoo.names()]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            acc = f"{100 * row['test_accuracy']:.2f}%" if row["test_accuracy"] is not None else "not trained"
            print(f"zoo:{row['name']:<12} test accuracy {acc}")
    return 0
