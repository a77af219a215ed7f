"""Start-up time: ``clusterdeck version`` and ``validate`` against importing the CLI's own stack.

The reference is ``python -c "import typer, rich, pydantic"`` on the same machine: what any
CLI built on these libraries pays before doing anything. The target is ``validate`` of an
example within 1.5 times that. Each command runs as a whole process, alternated, the median of
--runs reported (CPU time is shown too: it is steadier than wall time on a shared machine).
Also checks that neither boto3 nor asyncssh is imported by these commands.

    .venv/bin/python bench/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
CLI = Path(PY).with_name("clusterdeck")
COMMANDS = {
    "import typer, rich, pydantic": [PY, "-c", "import typer, rich, pydantic"],
    "clusterdeck version": [str(CLI), "version"],
    "clusterdeck validate": [str(CLI), "validate", "-f", str(ROOT / "examples" / "aws-ha.yaml")],
}


def once(argv: list[str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def heavy_imports(argv: list[str]) -> list[str]:
    res = subprocess.run(
        [PY, "-X", "importtime", "-m", "clusterdeck", *argv[1:]],
        capture_output=True,
        text=True,
        env={**os.environ},
    )
    names = {line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines()}
    return sorted(n for n in ("boto3", "asyncssh", "botocore") if n in names)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args(argv)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in COMMANDS}
    for argv_ in COMMANDS.values():
        once(argv_)  # warm the file cache
    for _ in range(args.runs):
        for name, argv_ in COMMANDS.items():
            samples[name].append(once(argv_))
    base_wall = statistics.median(w for w, _ in samples["import typer, rich, pydantic"])
    base_cpu = statistics.median(c for _, c in samples["import typer, rich, pydantic"])
    print(f"{'command':<32} {'wall s':>8} {'cpu s':>8} {'x wall':>7} {'x cpu':>7}  imports")
    for name, values in samples.items():
        wall = statistics.median(w for w, _ in values)
        cpu = statistics.median(c for _, c in values)
        heavy = heavy_imports(COMMANDS[name]) if name.startswith("clusterdeck") else []
        print(
            f"{name:<32} {wall:>8.3f} {cpu:>8.3f} {wall / base_wall:>7.2f} {cpu / base_cpu:>7.2f}"
            f"  {', '.join(heavy) or '-'}"
        )
    print("target: clusterdeck validate within 1.50x of the import line")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
