"""What the hardening checks cost on the hot paths: this tree against the code before them.

    python benchmarks/bench_hardening.py [--baseline 73eca62] [--rounds 7] [--size 2000] [--alternations 3]

The baseline is checked out with `git worktree add` into a temporary directory
and the same three workloads run, in separate processes, on both trees in turn:
building customers (`Customer.new` with e-mails, a phone and custom attributes),
compiling segment rules to SQL (parse, check, plan; text and JSON forms) and
composing personalised e-mails (`Mailer.compose`). Prints each one's best CPU
time (process time: a machine shared with other work slows wall time at random)
and the ratio baseline / this tree (1.0 = no cost; the aim is at least 0.9).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WORKLOAD = r"""
import json, sys, time
from datetime import UTC, datetime
import crmcore
from crmcore import Customer
from crmcore.operational.mail import Mailer, Template
from crmcore.segments import Context, to_data
from crmcore.segments.parse import checked
from crmcore.segments.sql import plan

size, rounds = int(sys.argv[1]), int(sys.argv[2])
NOW = datetime(2025, 1, 1, tzinfo=UTC)
RULES = [
    'tier in ("gold", "platinum") and sum(purchases.total, last 365 days) > 1000',
    'lower(name) contains "ada" or (country = "FR" and not consent.news.email)',
    'count(purchases where channel = "portal", since 2024-01-01) >= 3 and created_at > 2 years ago',
    'attributes.size between 38 and 44 and tags contains "vip" and birth_date is not null',
]
JSON_RULES = [to_data(checked(rule)[0]) for rule in RULES]


def customers():
    for i in range(size):
        Customer.new(f"Ada Lovelace {i}", emails=[f"ada{i}@example.org", f"a.l{i}@example.com"],
                     phones=["+33 6 12 34 56 78"], attributes={"size": 40, "note": "likes tea" * 5,
                                                               "since": NOW}, tier="gold")


def rules():
    context = Context(NOW)
    for _ in range(max(1, size // 20)):
        for rule in (*RULES, *JSON_RULES):
            tree, types = checked(rule)
            plan(tree, types, context, "sqlite")


class _Nowhere:
    def send(self, message):
        pass

    def close(self):
        pass


crm = crmcore.open("memory://", clock=lambda: NOW)
mailer = Mailer(crm, _Nowhere(), sender="Shop <news@shop.example>", unsubscribe="u@shop.example")
template = Template(subject="$first_name, your $tier offer: $code",
                    text="Hello $name,\nyour code is $code.\n",
                    html="<p>Hello <b>$name</b>, your code is $code.</p>", name="news")
people = [Customer.new(f"Zoé Martin {i}", emails=[f"zoe{i}@example.org"], tier="gold",
                       attributes={"city": "Lyon"}) for i in range(50)]


def mails():
    for i in range(size):
        mailer.compose(people[i % 50], template, purpose="marketing", context={"code": f"X{i}"})


found = {}
for name, work in (("customer build", customers), ("rule compile", rules), ("mail compose", mails)):
    work()  # warm up
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    found[name] = best
print(json.dumps(found))
"""


def measure(source: Path, size: int, rounds: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(source / "src")}
    run = subprocess.run(
        [sys.executable, "-c", WORKLOAD, str(size), str(rounds)],
        env=env,
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
    )
    if run.returncode:
        raise SystemExit(f"the workload failed on {source}:\n{run.stderr}")
    out = run.stdout
    found: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", default="73eca62", help="commit before the hardening checks")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--alternations", type=int, default=3, help="baseline/this-tree runs, in turn")
    parser.add_argument("--size", type=int, default=2000, help="customers built / mails composed per round")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crmcore-baseline-") as scratch:
        base = Path(scratch) / "tree"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base), args.baseline],
            check=True,
        )
        try:
            before, after = {}, {}
            for _ in range(args.alternations):  # interleaved, so a busy machine weighs on both alike
                for target, tree in ((before, base), (after, ROOT)):
                    for name, seconds in measure(tree, args.size, args.rounds).items():
                        target[name] = min(seconds, target.get(name, float("inf")))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=True)
    started = time.strftime("%Y-%m-%d %H:%M")
    print(f"bench_hardening {started}: size {args.size}, best of {args.rounds} x {args.alternations}, "
          f"baseline {args.baseline}")
    print(f"{'hot path':16} {'baseline cpu s':>15} {'this tree cpu s':>16} {'ratio':>7}")
    for name in before:
        print(f"{name:16} {before[name]:15.4f} {after[name]:16.4f} {before[name] / after[name]:7.2f}")


if __name__ == "__main__":
    main()
