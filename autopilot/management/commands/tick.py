"""`autopilot tick [PROJECT] [--json]`: one manager tick now (every project, or one)."""

from __future__ import annotations

from autopilot.cli_support import AutopilotCommand
from autopilot.manager.tick import tick_all, tick_project
from autopilot.models import Role
from autopilot.permissions import has_role, require_role, visible_projects
from autopilot.services import project_get


class Command(AutopilotCommand):
    help = "Run one manager tick: reconcile, then start or propose ready work within every limit."

    def add_arguments(self, parser):
        parser.add_argument("project", nargs="?", help="Project id, slug or name (default: every project).")

    def handle(self, *args, **options):
        actor = self.actor(options)
        if options["project"]:
            project = project_get(options["project"])
            if actor is not None:
                require_role(actor, project, Role.OPERATOR)
            report = tick_project(project, reason="cli", actor=actor)
        elif actor is not None and not actor.is_superuser:
            allowed = [p.pk for p in visible_projects(actor) if has_role(actor, p, Role.OPERATOR)]
            report = tick_all(reason="cli", actor=actor, project_ids=allowed)
        else:
            report = tick_all(reason="cli", actor=actor)
        data = report.as_dict()
        lines = [
            f"tick ({report.elapsed_s * 1000:.0f} ms): {len(report.started)} started, "
            f"{len(report.proposed)} proposed, "
            f"{report.promoted} became ready, {len(report.reaped)} expired leases reaped"
        ]
        for p in report.projects.values():
            skipped = ", ".join(f"{k}: {v}" for k, v in p.skipped.items())
            lines.append(
                f"  project {p.project_id} [{p.mode}{', paused' if p.paused else ''}] ready {p.ready}; "
                f"started {[s['task'] for s in p.started]} proposed {[s['task'] for s in p.proposed]}"
                + (f"; skipped {skipped}" if skipped else "")
                + (f"; {p.note}" if p.note else "")
            )
        self.emit(data, "\n".join(lines))
