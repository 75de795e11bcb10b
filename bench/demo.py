"""Wall time of the demo: a first run and a cached re-run, on the embedded synthetic data.

    python bench/demo.py [--workdir DIR]

Runs `breastdx demo` twice in a fresh work directory (data generation included in the
first) and prints each run's wall time and peak memory (resident set size of the child).
Goals (spine issue): first run <= 3 min on 2 cores, cached re-run <= 20 s.
"""

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time


def run(workdir):
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "breastdx_cli.main", "demo", "--workdir", workdir],
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"demo failed ({done.returncode}):\n{done.stderr[-3000:]}")
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return seconds, peak_mib, done.stdout


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", help="work directory (default: a fresh temporary one)")
    args = parser.parse_args(argv)
    workdir = args.workdir or tempfile.mkdtemp(prefix="breastdx-bench-")
    try:
        first, first_rss, summary = run(workdir)
        again, again_rss, _ = run(workdir)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print(summary)
    print(f"{os.cpu_count()} CPUs")
    print(
        f"first run (data + whole pipeline): {first:6.1f} s  peak RSS {first_rss:6.0f} MiB  (goal <= 180 s)"
    )
    print(
        f"cached re-run:                     {again:6.1f} s  peak RSS {again_rss:6.0f} MiB  (goal <= 20 s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
