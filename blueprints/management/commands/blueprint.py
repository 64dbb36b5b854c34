"""`autopilot blueprint ingest|diff|list PROJECT …` (each with --json)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from autopilot.cli_support import AutopilotCommand
from autopilot.errors import ApplicationError, NotFound
from autopilot.models import Role
from autopilot.permissions import require_role
from blueprints.ingestion import ingest_blueprint
from blueprints.models import Blueprint

WRITES = {"ingest"}
CATEGORIES = ("added", "changed", "moved", "removed")


def diff_text(diff: dict, counts: dict) -> str:
    head = f"v{diff.get('from_version') or '-'} → v{diff.get('to_version')}: " + ", ".join(
        f"{counts.get(c, 0)} {c}" for c in (*CATEGORIES, "unchanged")
    )
    lines = [head]
    marks = {"added": "+", "changed": "~", "moved": ">", "removed": "-"}
    for category in CATEGORIES:
        for entry in diff.get(category, []):
            moved = f"  (from {entry['from_anchor']})" if entry.get("from_anchor") else ""
            lines.append(f"  {marks[category]} {entry['kind']:<9} {entry['anchor']}{moved}")
        hidden = diff.get("truncated", {}).get(category)
        if hidden:
            lines.append(f"  … and {hidden} more {category}")
    return "\n".join(lines)


class Command(AutopilotCommand):
    help = "Blueprints: ingest a spec file as the next version, show a version's diff, list versions."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        def add(name, help_text):
            return self.add_action(sub, name, help_text, project=True)

        p = add("ingest", "ingest a Markdown (or plain text) file as the project's next blueprint version")
        p.add_argument("file", help="path of the spec, or - for standard input")
        p.add_argument("--title", default="", help="title of the version (default: the previous version's)")
        p.add_argument("--no-tasks", action="store_true", help="do not generate tasks and dependencies")

        p = add("diff", "what a version added, changed, moved and removed (default: the active version)")
        p.add_argument("--version", type=int, help="version number")

        add("list", "list the project's blueprint versions")

    def handle(self, *args, **options):
        self.as_json = bool(options.get("json"))
        actor = self.actor(options)
        project = self.project(options.get("project"), options)
        action = options["action"]
        if actor is not None:
            require_role(actor, project, Role.OPERATOR if action in WRITES else Role.VIEWER)
        getattr(self, f"do_{action}")(project, actor, options)

    def do_ingest(self, project, actor, options):
        raw = self._read(options["file"])
        result = ingest_blueprint(
            project=project,
            text=raw,
            title=options["title"],
            actor=actor,
            generate_tasks=not options["no_tasks"],
            progress=self.progress,
        )
        bp = result.blueprint
        data = {
            "blueprint": bp.pk,
            "project": project.pk,
            "version": result.version,
            "title": bp.title,
            "format": result.format,
            "counts": result.counts,
            "elapsed_s": round(result.elapsed_s, 4),
            "diff": result.diff,
        }
        c = result.counts
        text = (
            f"Ingested '{bp.title}' v{result.version} into {project.name} in {result.elapsed_s:.2f} s: "
            f"{c['nodes']} nodes ({c['headings']} headings, {c['checklist_items']} checklist items), "
            f"{c['tasks']} tasks, {c['dependencies']} dependencies.\n" + diff_text(result.diff, c)
        )
        self.emit(data, text)

    def _read(self, name: str) -> bytes:
        import sys

        limit = settings.AUTOPILOT_MAX_BLUEPRINT_BYTES
        if name == "-":
            return sys.stdin.buffer.read(limit + 1)
        path = Path(name).expanduser()
        if not path.is_file():
            raise ApplicationError(f"No such file: '{name}'.")
        size = path.stat().st_size
        if size > limit:
            raise ApplicationError(
                f"The blueprint is too large: {size:,} bytes, over the limit of {limit:,} bytes "
                "(AUTOPILOT_MAX_BLUEPRINT_BYTES)."
            )
        return path.read_bytes()

    def do_diff(self, project, actor, options):
        versions = Blueprint.objects.filter(project=project)
        if options.get("version"):
            bp = versions.filter(version=options["version"]).first()
            if bp is None:
                raise NotFound(f"Project '{project.name}' has no blueprint version {options['version']}.")
        else:
            bp = versions.filter(status=Blueprint.Status.ACTIVE).first()
            if bp is None:
                raise NotFound(f"Project '{project.name}' has no active blueprint; ingest one first.")
        data = {"blueprint": bp.pk, "version": bp.version, "counts": bp.counts, **bp.diff}
        self.emit(data, diff_text(bp.diff, bp.counts))

    def do_list(self, project, actor, options):
        rows = list(Blueprint.objects.filter(project=project).defer("diff").order_by("-version"))
        data = [
            {
                "id": b.pk,
                "version": b.version,
                "title": b.title,
                "status": b.status,
                "format": b.format,
                "size_bytes": b.size_bytes,
                "counts": b.counts,
                "created_at": b.created_at,
            }
            for b in rows
        ]
        text = (
            "\n".join(
                f"v{b.version:<4} {b.status:<10} {b.format:<8} {b.size_bytes:>10,} B  "
                f"{b.counts.get('nodes', 0):>6} nodes  {b.title}"
                for b in rows
            )
            or "No blueprint yet."
        )
        self.emit(data, text)
