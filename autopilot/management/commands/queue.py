"""`autopilot queue status|clear [--project P] [--format table|json]`: the global run queue."""

from __future__ import annotations

from autopilot.cli_support import AutopilotCommand, format_table
from autopilot.errors import PermissionDenied
from autopilot.manager import queue
from autopilot.models import Project, Role
from autopilot.permissions import has_role


class Command(AutopilotCommand):
    help = "Show the run queue with positions, or clear it (cancels queued runs; owners only)."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["status", "clear"])
        parser.add_argument("--project", help="Only this project's runs (id, slug or name).")
        parser.add_argument("--format", choices=["table", "json"], default="table")

    def handle(self, *args, **options):
        actor = self.actor(options)
        projects = Project.objects.all()
        if options["project"]:
            projects = projects.filter(pk=self.project(options["project"], options, register=False).pk)
        if options["format"] == "json":
            self.as_json = True
        if options["action"] == "status":
            data = queue.queue_status(projects=None if not options["project"] else projects)
            lines = [
                f"queue: {data['size']}/{data['max']} queued, "
                f"{data['active_runs']}/{data['max_concurrent_runs']} active"
            ]
            rows = [
                [
                    row["position"],
                    row["run"],
                    row["priority"],
                    row["project_name"],
                    f"task {row['task']}" if row["task"] else "ad-hoc",
                    row["task_title"] or row["prompt"][:60],
                ]
                for row in data["runs"]
            ]
            if rows:
                lines.append(format_table(rows, ["POS", "RUN", "PRIORITY", "PROJECT", "FOR", "WHAT"]))
            self.emit(data, "\n".join(lines))
            return
        if actor is not None and not actor.is_superuser:
            owned = [p.pk for p in projects if has_role(actor, p, Role.OWNER)]
            if not owned:
                raise PermissionDenied("Clearing the queue needs the owner role.")
            projects = Project.objects.filter(pk__in=owned)
        cancelled = queue.queue_clear(actor=actor, projects=projects)
        self.emit(
            {"cancelled": cancelled, "count": len(cancelled)}, f"cancelled {len(cancelled)} queued run(s)"
        )
