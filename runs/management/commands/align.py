"""`autopilot align RUN [--llm] [--json]`: the alignment check of a run's change (runs.alignment)."""

from __future__ import annotations

from autopilot.models import Role
from runs import alignment
from runs.management.commands._runcli import RunCliCommand, get_run


class Command(RunCliCommand):
    help = (
        "Check that a run's change stays in its task's scope (files named by the task, size against "
        "complexity, tests, forbidden paths): aligned, warn or block, stored on the run."
    )

    def add_arguments(self, parser):
        parser.add_argument("run", metavar="RUN", help="Run (session) id.")
        parser.add_argument("--llm", action="store_true", help="Also ask the project's manager-role model.")

    def handle(self, *args, **options):
        run = get_run(self, options["run"], options, Role.OPERATOR)
        result = alignment.check_run(run, llm=options["llm"])
        stats = result["stats"]
        lines = [
            f"run #{run.pk}: {result['verdict'].upper()} — {stats['files']} file(s), "
            f"{stats['lines']} line(s), {stats['tests_changed']} test file(s), "
            f"complexity {stats['complexity']}"
        ]
        lines += [f"  [{r['severity']}] {r['message']}" for r in result["reasons"]]
        judgement = result.get("llm") or {}
        if judgement.get("verdict"):
            lines.append(f"  [model {judgement['model']}] {judgement['verdict']}: {judgement['reason']}")
        elif judgement.get("error"):
            lines.append(f"  [model] {judgement['error']}")
        self.emit({"run": run.pk, **result}, "\n".join(lines))
