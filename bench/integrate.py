"""Benchmark: a generated DAG of 60 tasks integrated under a real `autopilot serve` in full_auto.

A fresh temp data dir (SQLite, embedded channel layer, django-q2 ORM broker) and a real git
repository. Every task is run by the offline `scripted` backend following the actions in its body:

- task i creates `mNN.py` (its `value()` adds the values of its prerequisites' modules) and its unit
  test `test_mNN.py`, and edits a line of EACH prerequisite's module that only that prerequisite
  created (`HOOK_i = 0` → `HOOK_i = i`), so it only works on top of its integrated prerequisites;
- diamond joins: about a third of the tasks depend on two siblings that share a prerequisite;
- about 10 % of the tasks come in pairs of independent siblings that edit the SAME line of their
  shared prerequisite (`SHARED = [...]`), so whichever merges second has a real merge conflict. The
  conflict reaction's follow-up run follows the task's ```scripted follow-up block: a small program
  (run with python3 like any agent command) that resolves the conflict markers / applies the task's
  edits again on whatever it starts from, keeping both sides' entries.

Before the server starts and again after it stopped, the same scripts are applied in dependency order
on a plain repository and each task branch is merged with a bare `git merge --no-ff` followed by the
same test command: that proves every script implements its task (its tests pass on top of its
prerequisites) and is the BASELINE of the integration overhead, measured in the same invocation
(both passes bracket the measured run, as the machine's load drifts). The baseline runs the test
command exactly as the merge queue must: through `runs.workspace.run_script`, i.e. in the same
sandbox (bubblewrap when installed, scrubbed environment, timeout, output cap). The sandbox is a
requirement of the merge queue, not overhead, so comparing against an unsandboxed test run would
charge the queue for it (~0.1 s per run); the bare unsandboxed test time is printed for reference.

Then `autopilot serve` (2 workers) takes the project to full_auto and nothing but Autopilot moves the
DAG forward. Printed: wall time, merges, conflicts resolved, reworks, the median integration overhead
per merged task (an Integration record's started_at → finished_at: bringing the branch onto the
integration head, the test command, the compare-and-swap ref update) against the baseline's median
(ratio; target ≤ 1.5×), and the end state: every task done, the integration branch's tests pass in a
fresh checkout, the base branch untouched.

Usage: python bench/integrate.py [--tasks 60] [--workers 2] [--seed 11] [--timeout 420]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST_COMMAND = "python3 -m unittest -q"
INTEGRATION_BRANCH = "autopilot/integration"  # the project's (default) integration branch
BASE_FILES = {
    "README.md": "# Integration benchmark repository\n",
    ".gitignore": "__pycache__/\n",
    "test_base.py": "import unittest\n\n\nclass BaseTest(unittest.TestCase):\n"
    "    def test_base(self):\n        self.assertTrue(True)\n",
}
MARKERS = ("<<<<<<<", "|||||||", "=======", ">>>>>>>")


@dataclass
class Spec:
    index: int
    deps: list[int] = field(default_factory=list)
    dependents: list[int] = field(default_factory=list)
    shared_in: int | None = None  # the prerequisite whose SHARED line this task edits (a conflict pair)

    @property
    def name(self) -> str:
        return f"m{self.index:02d}"


def generate(n: int, seed: int) -> list[Spec]:
    """A random DAG in dependency order (every prerequisite has a smaller index) with diamond joins and
    pairs of independent siblings editing the same line of their shared prerequisite."""
    rng = random.Random(seed)
    specs = [Spec(0)]
    ancestors: list[set[int]] = [set()]
    for i in range(1, n):
        spec = Spec(i)
        # Diamond: two independent siblings that share a prerequisite; else one recent task (a wide DAG).
        joins = [
            (a, b)
            for a in range(max(0, i - 10), i)
            for b in range(a + 1, i)
            if set(specs[a].deps) & set(specs[b].deps) and a not in ancestors[b]
        ]
        if i >= 4 and joins and rng.random() < 0.35:
            spec.deps = list(rng.choice(joins))
        else:
            spec.deps = [rng.randrange(max(0, i - 8), i)]
        ancestors.append(set(spec.deps).union(*(ancestors[d] | {d} for d in spec.deps)))
        specs.append(spec)
        for d in spec.deps:
            specs[d].dependents.append(i)
    # Conflict pairs (~10 %): two independent dependents of the same prerequisite, not already paired.
    pairs_wanted, paired = max(1, round(n * 0.1 / 2)), set()
    for p in rng.sample(range(n), n):
        if pairs_wanted == 0:
            break
        free = [d for d in specs[p].dependents if d not in paired]
        pair = next(
            ((a, b) for a in free for b in free if a < b and a not in ancestors[b] and b not in ancestors[a]),
            None,
        )
        if pair:
            for d in pair:
                specs[d].shared_in = p
                paired.add(d)
            pairs_wanted -= 1
    return specs


def value_of(specs: list[Spec]) -> list[int]:
    values: list[int] = []
    for spec in specs:
        values.append(spec.index + 1 + sum(values[d] for d in spec.deps))
    return values


def module_text(spec: Spec) -> str:
    lines = [f'"""Module of task {spec.index} (integration benchmark)."""', ""]
    lines += [f"from {Spec(d).name} import value as value_{d:02d}" for d in spec.deps]
    lines += ["", f"OWN = {spec.index + 1}", "", "", "def value():"]
    lines += ["    return OWN" + "".join(f" + value_{d:02d}()" for d in spec.deps), "", ""]
    lines += ["# Tasks that build on this one add their name here.", f"SHARED = {json.dumps([spec.name])}"]
    for d in spec.dependents:
        lines += ["", "", f"# The hook task {d} sets.", f"HOOK_{d:02d} = 0"]
    return "\n".join(lines) + "\n"


def test_text(spec: Spec, expected: int) -> str:
    imports = sorted({spec.name, *(Spec(d).name for d in spec.deps)})
    lines = ["import unittest", "", *[f"import {m}" for m in imports], "", ""]
    lines += [f"class Task{spec.index:02d}Test(unittest.TestCase):", "    def test_value(self):"]
    lines += [f"        self.assertEqual({spec.name}.value(), {expected})"]
    for d in spec.deps:
        lines += ["", f"    def test_hook_in_{Spec(d).name}(self):"]
        lines += [f"        self.assertEqual({Spec(d).name}.HOOK_{spec.index:02d}, {spec.index})"]
    if spec.shared_in is not None:
        lines += ["", f"    def test_shared_in_{Spec(spec.shared_in).name}(self):"]
        lines += [f'        self.assertIn("{spec.name}", {Spec(spec.shared_in).name}.SHARED)']
    return "\n".join(lines) + "\n"


FIXER = """\
import json
import os
import pathlib
import subprocess
mine, hooks, shared_in, integration = {mine!r}, {hooks!r}, {shared_in!r}, {integration!r}


def entries(text):
    found = []
    for line in text.splitlines():
        if line.startswith("SHARED = "):
            found += json.loads(line[len("SHARED = "):])
    return found


for stem in hooks:
    path = pathlib.Path(stem + ".py")
    text = path.read_text()
    names = entries(text)
    if stem == shared_in:
        names.append(mine)
        other = subprocess.run(["git", "show", integration + ":" + path.name], capture_output=True, text=True)
        names += entries(other.stdout)
    names = list(dict.fromkeys(names))
    out, slot = [], None
    for line in text.splitlines():
        if line.startswith({markers!r}):
            continue
        if line.startswith("SHARED = "):
            if slot is None:
                slot = len(out)
                out.append("SHARED = " + json.dumps(names))
            continue
        if line.startswith(hooks[stem] + " = "):
            line = hooks[stem] + " = " + hooks[stem][len("HOOK_"):].lstrip("0")
        out.append(line)
    path.write_text(chr(10).join(out) + chr(10))
os.remove(__file__)
"""


def fixer(spec: Spec, integration: str) -> list[dict]:
    """The follow-up's resolution, as an agent would do it: a throwaway program (it deletes itself)
    that, on whatever the run starts from (its branch brought up to date with the integration head,
    conflicting hunks on the task's side), brings the other side's SHARED entries back in (read from
    the integration branch with `git show`: read-only git works in the sandbox) keeping the task's own,
    drops any conflict marker, and (re)applies the task's edits of its prerequisites' modules.
    Idempotent."""
    program = FIXER.format(
        mine=spec.name,
        hooks={Spec(d).name: f"HOOK_{spec.index:02d}" for d in spec.deps},
        shared_in=Spec(spec.shared_in).name if spec.shared_in is not None else None,
        integration=integration,
        markers=MARKERS,
    )
    name = f"resolve_{spec.name}.py"
    return [{"write": name, "content": program}, {"run": f"python3 {name}"}]


def scripts(spec: Spec, expected: int, integration: str) -> tuple[list[dict], list[dict]]:
    """(first run's actions, follow-up runs' actions) of a task."""
    files = [
        {"write": f"{spec.name}.py", "content": module_text(spec)},
        {"write": f"test_{spec.name}.py", "content": test_text(spec, expected)},
    ]
    edits = [
        {
            "edit": f"{Spec(d).name}.py",
            "old": f"HOOK_{spec.index:02d} = 0\n",
            "new": f"HOOK_{spec.index:02d} = {spec.index}\n",
        }
        for d in spec.deps
    ]
    if spec.shared_in is not None:
        owner = Spec(spec.shared_in).name
        edits.append(
            {
                "edit": f"{owner}.py",
                "old": f"SHARED = {json.dumps([owner])}\n",
                "new": f"SHARED = {json.dumps([owner, spec.name])}\n",
            }
        )
    first = [{"say": f"Task {spec.index}: {spec.name} on top of {spec.deps}."}, *files, *edits]
    first.append({"finish": f"{spec.name} and its test"})
    follow_up = [
        {"say": f"Task {spec.index} again: resolve and re-apply on the current code."},
        *files,
        *fixer(spec, integration),
        {"finish": f"{spec.name} re-applied"},
    ]
    return first, follow_up


def body(spec: Spec, first: list[dict], follow_up: list[dict]) -> str:
    deps = ", ".join(Spec(d).name for d in spec.deps) or "nothing"
    block = ",\n".join(json.dumps(a) for a in first)
    again = ",\n".join(json.dumps(a) for a in follow_up)
    return (
        f"## Task {spec.index}: {spec.name}\n\nBuilds on {deps}.\n\n```scripted\n[\n{block}\n]\n```\n\n"
        f"```scripted follow-up\n[\n{again}\n]\n```\n"
    )


# --- the baseline: the same scripts, a bare `git merge` and the same test command -------------------


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=GIT_ENV)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
}


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    for name, content in BASE_FILES.items():
        (path / name).write_text(content)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


def apply(repo: Path, actions: list[dict]) -> None:
    """What the scripted backend's tools do (write; edit exactly one occurrence; run a command)."""
    for action in actions:
        if "write" in action:
            (repo / action["write"]).write_text(action["content"])
        elif "edit" in action:
            path = repo / action["edit"]
            text = path.read_text()
            if text.count(action["old"]) != 1:
                raise LookupError(f"{action['edit']}: {action['old']!r} is not there exactly once")
            path.write_text(text.replace(action["old"], action["new"], 1))
        elif "run" in action:
            subprocess.run(
                shlex.split(action["run"]),
                cwd=repo,
                env=COMMAND_ENV,
                check=True,
                capture_output=True,
                timeout=60,
            )


# Commands resolve `python3` as Autopilot's sandbox does: the interpreter's own bin directory first (not a
# slower shim earlier on the PATH), so the baseline runs the very same program.
COMMAND_ENV = {**os.environ, "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])}


def run_tests(repo: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        shlex.split(TEST_COMMAND), cwd=repo, env=COMMAND_ENV, capture_output=True, text=True, timeout=300
    )


def run_tests_sandboxed(repo: Path, home: Path) -> tuple[int | None, str]:
    """The test command as the merge queue runs it (runs.workspace.run_script: the sandbox); the
    bench process has Django configured on a data dir of its own (see main)."""
    from runs import workspace  # Django must be set up first (main)

    result = workspace.run_script(TEST_COMMAND, cwd=repo, workspace=repo, home=home, timeout=300)
    return result.exit_code, result.output or ""


def baseline(specs: list[Spec], where: Path) -> dict:
    """Apply every task on its own branch from the integration head, then merge it with a bare
    `git merge --no-ff` and run the test command: the timed part. Fails loudly if a script does not
    implement its task (its edit has nothing to edit, or the tests fail). Returns the timings."""
    repo = make_repo(where)
    home = where.parent / f"{where.name}-home"
    home.mkdir()
    git(repo, "checkout", "-q", "-b", "integration")
    values = value_of(specs)
    overheads, merges, bare_tests, followed_up = [], [], [], 0
    for spec in specs:
        first, follow_up = scripts(spec, values[spec.index], "integration")
        git(repo, "checkout", "-q", "-b", f"task-{spec.index}", "integration")
        try:
            apply(repo, first)
        except LookupError:  # its conflict partner merged first: what the follow-up run does
            git(repo, "checkout", "-q", "--", ".")
            apply(repo, follow_up)
            followed_up += 1
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"task {spec.index}")
        git(repo, "checkout", "-q", "integration")
        started = time.perf_counter()
        git(repo, "merge", "-q", "--no-ff", "--no-edit", f"task-{spec.index}")
        merges.append(time.perf_counter() - started)
        exit_code, output = run_tests_sandboxed(repo, home)
        overheads.append(time.perf_counter() - started)
        if exit_code != 0:
            raise SystemExit(
                f"baseline: task {spec.index}'s tests fail on top of its prerequisites:\n{output}"
            )
        unsandboxed = time.perf_counter()
        run_tests(repo)
        bare_tests.append(time.perf_counter() - unsandboxed)
    return {"overheads": overheads, "merges": merges, "bare_tests": bare_tests, "followed_up": followed_up}


def summary(*passes: dict) -> dict:
    """Medians over the baseline passes (one before the server starts, one after it stopped: the
    machine's load drifts, so the baseline brackets the measured run)."""
    overheads = [t for p in passes for t in p["overheads"]]
    merges = [m for p in passes for m in p["merges"]]
    return {
        "median_s": statistics.median(overheads),
        "merge_median_s": statistics.median(merges),
        "test_median_s": statistics.median(t - m for t, m in zip(overheads, merges, strict=True)),
        "bare_test_median_s": statistics.median(t for p in passes for t in p["bare_tests"]),
    }


# --- the real thing -----------------------------------------------------------------------------------

SETUP = """
import json, sys
import django
django.setup()
from pathlib import Path
from autopilot.services import project_create
from blueprints.models import Task, TaskDependency
data = json.loads(Path(sys.argv[1]).read_text())
project = project_create(
    name="integrate", repo_path=data["repo"], test_command=data["test_command"],
    command_allowlist=["python3"],
    max_parallel_runs=data["parallel"], max_attempts=4,
    model_matrix={role: {"agent": "scripted"} for role in ("code", "test", "manager")},
)
tasks = [
    Task.objects.create(project=project, title=t["title"], body=t["body"], plan_order=i,
                        status="ready" if not t["deps"] else "todo")
    for i, t in enumerate(data["tasks"])
]
TaskDependency.objects.bulk_create([
    TaskDependency(task=tasks[i], depends_on=tasks[d])
    for i, t in enumerate(data["tasks"]) for d in t["deps"]
])
print(project.pk)
"""

REPORT = """
import json, sys
import django
django.setup()
from django.db.models import Sum
from autopilot.models import Event, Project
from blueprints.models import Task
from runs.models import ExecutionRun, Integration
project = Project.objects.get(pk=int(sys.argv[1]))
tasks = Task.objects.filter(project=project)
integrations = list(Integration.objects.filter(project=project).values(
    "id", "task_id", "status", "started_at", "finished_at", "conflict_files"))
testing = {
    e.subject_id: e.created_at
    for e in Event.objects.filter(subject_type="integration", kind="integration.status", data__to="testing")
}
for i in integrations:
    ends = i["started_at"], i["finished_at"]
    i["overhead"] = (ends[1] - ends[0]).total_seconds() if all(ends) else None
    tested = testing.get(i["id"])
    i["merge_phase"] = (tested - ends[0]).total_seconds() if tested and ends[0] else None
    i["test_phase"] = (ends[1] - tested).total_seconds() if tested and ends[1] else None
    del i["started_at"], i["finished_at"]
print(json.dumps({
    "done": tasks.filter(status__in=Task.SATISFIED).count(),
    "blocked": list(tasks.filter(status=Task.Status.BLOCKED).values_list("title", "pk")),
    "statuses": {s: tasks.filter(status=s).count() for s in Task.Status.values},
    "reworks": tasks.aggregate(n=Sum("rework_count"))["n"] or 0,
    "code_runs": ExecutionRun.objects.filter(project=project, role="code").count(),
    "failed_runs": ExecutionRun.objects.filter(project=project, status="failed").count(),
    "integration_branch": project.integration_branch,
    "integrations": integrations,
}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def python(env: dict, code: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise SystemExit(f"bench helper failed:\n{done.stderr[-3000:]}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=3, help="the project's max parallel runs")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--timeout", type=float, default=420)
    parser.add_argument("--keep", metavar="DIR", help="work in DIR (must not exist) and keep it, to inspect")
    args = parser.parse_args()
    specs = generate(args.tasks, args.seed)
    values = value_of(specs)
    conflict_tasks = sum(1 for s in specs if s.shared_in is not None)
    diamonds = sum(1 for s in specs if len(s.deps) == 2)
    with tempfile.TemporaryDirectory(prefix="ap-bench-integrate-") as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(exist_ok=bool(not args.keep))
        # Django in this process (a data dir of its own) for the baseline's sandboxed test runs.
        os.environ.update(
            {
                "AUTOPILOT_DATA_DIR": str(work / "baseline-data"),
                "DJANGO_SETTINGS_MODULE": "autopilot.settings",
            }
        )
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        before = baseline(specs, work / "baseline-before")
        repo = make_repo(work / "repo")
        base_head = git(repo, "rev-parse", "main")
        tasks = []
        for spec in specs:
            first, follow_up = scripts(spec, values[spec.index], INTEGRATION_BRANCH)
            tasks.append(
                {
                    "title": f"Task {spec.index}: {spec.name}",
                    "deps": spec.deps,
                    "body": body(spec, first, follow_up),
                }
            )
        (work / "setup.json").write_text(
            json.dumps(
                {"repo": str(repo), "test_command": TEST_COMMAND, "parallel": args.parallel, "tasks": tasks}
            )
        )
        env = {
            **os.environ,
            "AUTOPILOT_DATA_DIR": str(work / "data"),
            "DJANGO_SETTINGS_MODULE": "autopilot.settings",
            "PYTHONPATH": str(ROOT),
            "AUTOPILOT_LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        for key in ("DATABASE_URL", "REDIS_URL", "AUTOPILOT_SQLITE_PATH", "AUTOPILOT_CHANNELS_SQLITE_PATH"):
            env.pop(key, None)
        subprocess.run(
            [sys.executable, "manage.py", "setup"], cwd=ROOT, env=env, capture_output=True, check=True
        )
        project_id = int(python(env, SETUP, str(work / "setup.json")).strip().splitlines()[-1])
        log_path = work / "serve.log"
        log = open(log_path, "w")
        server = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "serve",
                "--port",
                str(free_port()),
                "--workers",
                str(args.workers),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started = time.monotonic()
        data: dict = {}
        try:
            python(
                env,
                "import django; django.setup(); from autopilot.models import Project; "
                "from autopilot.services import project_update_autonomy as u; "
                f"u(project=Project.objects.get(pk={project_id}), autonomy_mode='full_auto')",
            )
            while time.monotonic() - started < args.timeout:
                data = json.loads(python(env, REPORT, str(project_id)))
                if data["done"] >= args.tasks or data["blocked"]:
                    break
                time.sleep(2)
            wall = time.monotonic() - started
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, 9)
            log.close()

        base = summary(before, baseline(specs, work / "baseline-after"))
        integrations = data.get("integrations", [])
        merged = [i for i in integrations if i["status"] == "merged"]
        conflicts = [i for i in integrations if i["status"] == "conflict"]
        resolved = {i["task_id"] for i in conflicts} & {i["task_id"] for i in merged}
        overheads = [i["overhead"] for i in merged if i["overhead"] is not None]
        branch = data.get("integration_branch", "autopilot/integration")
        check = work / "check"
        tests_pass = False
        if merged:
            git(repo, "worktree", "add", "-q", "--detach", str(check), branch)
            tests = run_tests(check)
            tests_pass = tests.returncode == 0
        base_untouched = git(repo, "rev-parse", "main") == base_head
        print(
            f"DAG of {args.tasks} tasks ({diamonds} diamond joins, "
            f"{conflict_tasks} tasks in conflicting pairs), "
            f"full_auto, scripted backend, `autopilot serve` with {args.workers} workers"
        )
        print(
            f"wall time {wall:.1f} s; tasks done {data.get('done', 0)}/{args.tasks}; merges {len(merged)}; "
            f"conflicts {len(conflicts)}, resolved {len(resolved)}; reworks {data.get('reworks', 0)}; "
            f"code runs {data.get('code_runs', 0)} (failed runs {data.get('failed_runs', 0)})"
        )
        ratio = statistics.median(overheads) / base["median_s"] if overheads else float("nan")
        if overheads:
            print(
                f"median integration overhead per task {statistics.median(overheads):.3f} s "
                f"(bring onto the integration head + tests + ref update; max {max(overheads):.3f} s) vs "
                f"bare `git merge` + sandboxed `{TEST_COMMAND}` {base['median_s']:.3f} s: "
                f"{ratio:.2f}x (target <= 1.5x)"
            )
        merge_phases = [i["merge_phase"] for i in merged if i.get("merge_phase") is not None]
        test_phases = [i["test_phase"] for i in merged if i.get("test_phase") is not None]
        if overheads:
            print(
                f"  fixed cost per merge over the bare commands: "
                f"{statistics.median(overheads) - base['median_s']:.3f} s (median)"
            )
        if merge_phases and test_phases:
            print(
                f"  phases (median): bring onto the head {statistics.median(merge_phases):.3f} s vs bare "
                f"`git merge` {base['merge_median_s']:.3f} s; tests + ref update "
                f"{statistics.median(test_phases):.3f} s vs sandboxed tests {base['test_median_s']:.3f} s "
                f"(unsandboxed: {base['bare_test_median_s']:.3f} s)"
            )
        print(
            f"end state: every task done: {data.get('done') == args.tasks}; integration branch tests pass: "
            f"{tests_pass}; base branch untouched: {base_untouched}"
        )
        ok = data.get("done") == args.tasks and tests_pass and base_untouched
        print(
            json.dumps(
                {
                    "tasks": args.tasks,
                    "done": data.get("done", 0),
                    "statuses": data.get("statuses"),
                    "wall_s": round(wall, 2),
                    "merges": len(merged),
                    "conflicts": len(conflicts),
                    "conflicts_resolved": len(resolved),
                    "reworks": data.get("reworks", 0),
                    "median_overhead_s": round(statistics.median(overheads), 4) if overheads else None,
                    "baseline_median_s": round(base["median_s"], 4),
                    "baseline_unsandboxed_tests_median_s": round(base["bare_test_median_s"], 4),
                    "ratio": round(ratio, 3) if overheads else None,
                    "integration_tests_pass": tests_pass,
                    "base_untouched": base_untouched,
                }
            )
        )
        if not ok:
            print("serve log tail:\n" + log_path.read_text()[-3000:])
            shutil.rmtree(check, ignore_errors=True)
            sys.exit(1)


if __name__ == "__main__":
    main()
