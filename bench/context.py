"""Benchmark: build the context bundle (runs.bundle) for random tasks of a 500,000-word spec.

    .venv/bin/python bench/context.py [FILE] [--tasks N] [--seed S] [--budget TOKENS]

Into a fresh SQLite database (a temporary AUTOPILOT_DATA_DIR, migrated here) it ingests the spec with
its tasks once (untimed), then for N random work tasks (the same ones for both) times:
  - the baseline: reading the task's section text alone (`blueprints.selectors.section_text`: the
    active version, the node placed by its layout, the slice of the text),
  - the whole bundle: `runs.bundle.build_bundle` for a run of the task (task, place in the spec,
    pinned, related and relevant sections, prerequisites, earlier attempts, snapshot, within budget).
It prints median and p95 per bundle and per baseline read, their ratio, bundle sizes (tokens,
estimated at characters / 4), which parts appear, and how often the budget forced drops. The target
(median ≤ 50 ms per bundle) is reported, not asserted.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from _setup import embedded_django

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FILE = ROOT.parent / "shared" / "data" / "blueprints" / "rust-rfcs-500k.md"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file", nargs="?", default=str(DEFAULT_FILE))
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--budget", type=int, default=None, help="Token budget (default: the model's).")
    parser.add_argument("--model", default="anthropic:claude-sonnet-4-6")
    args = parser.parse_args()
    path = Path(args.file)
    if not path.exists():
        print(f"bench/context.py: {path} not found", file=sys.stderr)
        return 1

    tmp = embedded_django("autopilot-bench-", "WARNING")
    from autopilot.services import project_create
    from blueprints.ingestion import ingest_blueprint
    from blueprints.models import Task
    from blueprints.selectors import section_text
    from runs.bundle import DROPPED, SUMMARIZED, TRUNCATED, build_bundle
    from runs.models import ExecutionRun

    text = path.read_text(encoding="utf-8")

    repo = Path(tmp) / "repo"
    repo.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x"}
    env.update(GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@x")
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True, env=env)
    init = ["git", "-C", str(repo), "commit", "-q", "--allow-empty", "-m", "init"]
    subprocess.run(init, check=True, env=env)
    project = project_create(name="bench-context", repo_path=str(repo))
    t0 = time.perf_counter()
    ingest_blueprint(project=project, text=text, title="Rust RFCs")
    ingest_s = time.perf_counter() - t0

    ids = list(
        Task.objects.filter(project=project, kind=Task.Kind.WORK, plan_node__isnull=False).values_list(
            "pk", flat=True
        )
    )
    chosen = random.Random(args.seed).sample(ids, min(args.tasks, len(ids)))

    baseline, bundle_times, sizes, section_sizes = [], [], [], []
    forced, truncated, parts_seen, states = 0, 0, Counter(), Counter()
    for task_id in chosen:
        # Each task is read afresh for both (no object shared between the two measurements).
        task = Task.objects.select_related("plan_node").get(pk=task_id)
        t0 = time.perf_counter()
        section = section_text(task.plan_node)
        baseline.append(time.perf_counter() - t0)
        section_sizes.append(len(section) / 4)

        run = ExecutionRun(
            project=project,
            task=Task.objects.get(pk=task_id),
            agent_backend="native",
            model=args.model,
            prompt="Implement it.",
        )
        t0 = time.perf_counter()
        bundle = build_bundle(run, budget_tokens=args.budget)
        bundle_times.append(time.perf_counter() - t0)
        sizes.append(bundle.tokens)
        forced += bool(bundle.omitted)
        for part in bundle.parts:
            parts_seen[part.name] += 1
            if part.state in (DROPPED, SUMMARIZED, TRUNCATED):
                states[f"{part.name} {part.state}"] += 1
        truncated += any(p.name == "task" and p.state == TRUNCATED for p in bundle.parts)

    n = len(chosen)
    b_med, b_p95 = statistics.median(baseline) * 1000, percentile(baseline, 0.95) * 1000
    c_med, c_p95 = statistics.median(bundle_times) * 1000, percentile(bundle_times, 0.95) * 1000
    budget = bundle.budget_tokens
    print(f"file: {path.name}: {len(text):,} characters; ingested with tasks in {ingest_s:.1f} s (untimed)")
    print(
        f"tasks: {n} random work tasks of {len(ids):,} (seed {args.seed}); "
        f"model {args.model}, budget {budget:,}"
    )
    print(f"baseline (section text alone): median {b_med:.2f} ms, p95 {b_p95:.2f} ms")
    print(f"bundle:                        median {c_med:.2f} ms, p95 {c_p95:.2f} ms")
    print(
        f"ratio bundle / section read: median {c_med / b_med:.1f}x, p95 {c_p95 / b_p95:.1f}x; "
        f"target median <= 50 ms: {'OK' if c_med <= 50 else 'MISSED'}"
    )
    print(
        f"bundle size (tokens ≈ chars/4): median {statistics.median(sizes):,.0f}, p95 "
        f"{percentile(sizes, 0.95):,.0f}, max {max(sizes):,} (the section alone: median "
        f"{statistics.median(section_sizes):,.0f})"
    )
    print(
        f"budget forced drops or summaries in {forced} of {n} bundles ({forced / n:.0%}); "
        f"task text truncated in {truncated}"
    )
    print("parts present: " + ", ".join(f"{name} {count}" for name, count in parts_seen.most_common()))
    if states:
        print("budget actions: " + ", ".join(f"{name} {count}" for name, count in states.most_common()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
