"""Peak memory of streaming a whole customer base: `crm.customers.iterate()`.

    python benchmarks/bench_iterate.py [--customers 200000]   # --customers 1000000 for the issue's figure

Each size runs in a process of its own: the base is built by a streaming bulk import
(itself flat in memory), then every customer is read back page by page. Prints the
peak RSS of the iteration at a tenth of the size and at the full size: flat means
the two stay close.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile

CHILD = """
import resource, sys, time, crmcore
from crmcore.synthetic import SyntheticBase
url, size = sys.argv[1], int(sys.argv[2])
crm = crmcore.open(url)
crm.bulk_import(SyntheticBase(size=size, seed=5).customers())
base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
count = sum(1 for _ in crm.customers.iterate(batch=1000))
elapsed = time.perf_counter() - started
print(count, elapsed, base_rss, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def measure(size: int) -> tuple[int, float, int, int]:
    with tempfile.TemporaryDirectory() as directory:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, f"sqlite:///{directory}/iterate.db", str(size)],
            check=True, capture_output=True, text=True,
        ).stdout.split()
    return int(out[0]), float(out[1]), int(out[2]), int(out[3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=200_000)
    args = parser.parse_args()
    print(f"{'customers':>10} {'seconds':>8} {'per s':>9} {'peak RSS MB':>12}")
    for size in (args.customers // 10, args.customers):
        count, elapsed, _, peak = measure(size)
        assert count == size
        print(f"{count:>10,} {elapsed:>8.1f} {count / elapsed:>9,.0f} {peak / 1024:>12.1f}")


if __name__ == "__main__":
    main()
