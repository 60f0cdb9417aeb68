"""Shared pieces of the benchmarks: timing, machine facts, printed tables, saved results.

Every benchmark times both sides in the same process and session, alternating them, and
reports the median of at least three repeats after warm-up rounds of each side (JIT, caches).
Results are printed as a table and saved as JSON under benchmarks/_work/results/ for the
RESULTS.md summary.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(os.environ.get("REVIEWLAKE_BENCH_DIR", ROOT / "benchmarks" / "_work"))
sys.path.insert(0, str(ROOT / "lib"))


def machine() -> dict:
    mem = None
    try:
        with open("/proc/meminfo") as fh:
            mem = round(int(fh.readline().split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {"cores": os.cpu_count(), "memory_gb": mem, "python": platform.python_version(),
            "platform": platform.platform(), "date": dt.date.today().isoformat()}


def median_times(sides: dict[str, Callable[[], object]], repeats: int = 3,
                 warmup: int = 2) -> dict[str, list[float]]:
    """Run each side `repeats` times, alternating, after `warmup` untimed rounds (the JVM's
    JIT needs a few runs of a query shape before its timings settle)."""
    for _ in range(warmup):
        for fn in sides.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, fn in sides.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def med(values: list[float]) -> float:
    return statistics.median(values)


def table(title: str, header: list[str], rows: list[list[object]]) -> str:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells[1:]]
    return "\n".join([f"### {title}", "", line, sep, *body])


def goal(name: str, value: float, target: float, higher_is_better: bool = True) -> dict:
    """One goal of a benchmark: a measured ratio against its target."""
    met = value >= target if higher_is_better else value <= target
    return {"name": name, "value": round(value, 4), "target": target,
            "op": ">=" if higher_is_better else "<=", "met": bool(met)}


def goal_lines(goals: list[dict]) -> str:
    return "\n".join(f"goal: {g['name']} {g['op']} {g['target']} -> {g['value']:.2f} "
                     f"({'met' if g['met'] else 'MISSED'})" for g in goals)


def versions() -> dict:
    """Installed versions of the stack (from package metadata: nothing is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("pyspark", "pyarrow", "pandas", "tensorflow-cpu", "horovod", "transformers",
                 "tokenizers", "pydeequ"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def save(name: str, result: dict) -> Path:
    """Keep a benchmark's result for RESULTS.md: needs "table" (markdown) and "goals"."""
    out = WORK / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = dict(result, machine=machine(), versions=versions(), benchmark=name)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return out


def generated_raw(name: str, rows: int, seed: int = 1, **options) -> Path:
    """Raw TSV made by ``reviewlake generate`` (``rows``, ``seed`` and generate's ``options``)
    under WORK/name, made once: made again only when it is missing or was made with other
    settings."""
    import shutil

    from reviewlake.generate import MANIFEST_NAME, generate

    src = WORK / name
    stamp = src / "_benchmark_settings.json"
    want = {"rows": rows, "seed": seed, **options}
    if not (src / MANIFEST_NAME).exists() or not stamp.exists() or \
            json.loads(stamp.read_text()) != want:
        shutil.rmtree(src, ignore_errors=True)
        generate(rows=rows, output=src, seed=seed, **options)
        stamp.write_text(json.dumps(want))
    return src


def prepared_features(name: str, rows: int, seed: int, files: int, settings: list[str]) -> str:
    """The features of `rows` generated reviews run through the real upstream stages
    (generate -> ingest -> prepare, with prepare's `settings` as KEY=VALUE), cached under
    WORK/name: a benchmark that needs features builds them once."""
    import shutil

    base = WORK / name
    if (base / "features" / "_meta.json").exists():
        return str(base / "features")
    from reviewlake.config import Config
    from reviewlake.features.cli import run as prepare
    from reviewlake.generate import generate
    from reviewlake.ingest.job import run_ingest
    from reviewlake.session import get_spark

    shutil.rmtree(base, ignore_errors=True)
    generate(rows=rows, output=base / "raw", seed=seed, files=files)
    cfg = Config.load(None, ["spark.log_level=ERROR", f"data.lake={base / 'lake'}",
                             f"data.features={base / 'features'}", *settings])
    spark = get_spark(cfg, f"bench-{name}-features")
    run_ingest(spark, [str(base / "raw")], str(base / "lake"))
    prepare(cfg, spark)
    spark.stop()
    shutil.rmtree(base / "raw")
    shutil.rmtree(base / "lake")
    return str(base / "features")
