"""A longer property-based fuzz of claude-tray than the test suite runs: the same test
(`tests/test_fuzz.py`: schemathesis from claude-tray's own OpenAPI document, against a
live proxy and the scripted upstream), with more examples, every phase on every route,
and a seed of your choice.

Run from the repo root:

    python -m benchmarks.fuzz [--examples 500] [--seed N | --random-seed]
                              [--only REGEX] [--all-routes] [--phases examples,coverage,fuzzing]
                              [--quick-coverage] [-- PYTEST ARGS...]

`--examples` bounds the fuzzing phase per operation; the coverage phase sends every
boundary case the schema defines (about a minute and a half for each route that runs
turns; `--quick-coverage` skips it there, as the test suite does). `--all-routes` also
fuzzes the aliases without `/v1`, `--only` limits the run to paths matching a regular
expression. A failure prints schemathesis' report with a `curl` line that reproduces
it; rerun with the same `--seed` to see it again. The exit status is pytest's.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=500, help="fuzzing examples per operation")
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=8, help="the schemathesis seed (default 8)")
    seeds.add_argument("--random-seed", action="store_true", help="pick a seed and print it")
    parser.add_argument("--only", default="", help="fuzz only paths matching this regex")
    parser.add_argument("--all-routes", action="store_true", help="also the routes without /v1")
    parser.add_argument("--phases", default="examples,coverage,fuzzing")
    parser.add_argument(
        "--quick-coverage",
        action="store_true",
        help="no coverage phase on the routes that run turns (as in the test suite)",
    )
    parser.add_argument("pytest_args", nargs="*", help="passed on to pytest (after --)")
    args = parser.parse_args(argv)

    seed = random.randrange(2**31) if args.random_seed else args.seed
    print(f"fuzz: seed {seed}, {args.examples} examples per operation", file=sys.stderr)
    env = {
        **os.environ,
        "CLAUDE_TRAY_FUZZ_EXAMPLES": str(args.examples),
        "CLAUDE_TRAY_FUZZ_SEED": str(seed),
        "CLAUDE_TRAY_FUZZ_PHASES": args.phases,
        "CLAUDE_TRAY_FUZZ_ONLY": args.only,
        "CLAUDE_TRAY_FUZZ_ALL_ROUTES": "1" if args.all_routes else "0",
        "CLAUDE_TRAY_FUZZ_TURN_COVERAGE": "0" if args.quick_coverage else "1",
    }
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "tests/test_fuzz.py",
        "--timeout=0",  # the suite's per-test limit is for the quick run
        "-v",
        *args.pytest_args,
    ]
    return subprocess.run(command, cwd=REPO, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
