"""`autopilot status`: the running sessions across your projects (id, project, pid, uptime, cost).
`autopilot status RUN`: one run's status, reason, branch, cost and steps."""

from __future__ import annotations

from django.utils import timezone

from autopilot.cli_support import AutopilotCommand, format_table
from autopilot.selectors import project_list
from runs import selectors
from runs.management.commands._runcli import get_run, run_text, step_line
from runs.models import ExecutionRun


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class Command(AutopilotCommand):
    help = "Running sessions across your projects (id, project, pid, uptime, cost), or one run's status."

    def add_arguments(self, parser):
        parser.add_argument("run", nargs="?", type=int, help="A run id: its status and steps.")
        parser.add_argument("--project", metavar="NAME", help="Only this project's sessions.")
        parser.add_argument("--format", choices=["table", "json"], default="table")

    def handle(self, *args, **options):
        if options["run"] is not None:
            run = get_run(self, options["run"], options)
            run = selectors.run_get(run.pk, with_steps=True)
            data = selectors.run_to_dict(run)
            self.emit(data, run_text(run, data) + "\n" + "\n".join(step_line(s) for s in run.steps.all()))
            return
        actor = self.actor(options)
        projects = project_list(user=actor)
        if options["project"]:
            projects = projects.filter(pk=self.project(options["project"], options).pk)
        runs = list(
            ExecutionRun.objects.filter(project__in=projects, status__in=ExecutionRun.ACTIVE)
            .select_related("project")
            .order_by("started_at", "id")
        )
        now = timezone.now()
        data = [
            {
                "id": run.pk,
                "project": run.project_id,
                "project_name": run.project.name,
                "status": run.status,
                "pid": run.pid,
                "started_at": run.started_at,
                "cost_usd": run.cost_usd,
                "task": run.task_id,
                "uptime_seconds": round((now - run.started_at).total_seconds(), 1)
                if run.started_at
                else None,
            }
            for run in runs
        ]
        if options["format"] == "json":
            self.as_json = True
        if not data:
            self.emit(data, "no running sessions")
            return
        rows = [
            [
                row["id"],
                row["project_name"],
                row["status"],
                row["pid"],
                _uptime(row["uptime_seconds"]),
                f"${row['cost_usd']:.4f}",
            ]
            for row in data
        ]
        self.emit(data, format_table(rows, ["ID", "PROJECT", "STATUS", "PID", "UPTIME", "COST"]))
