"""`autopilot plan show PROJECT [--json]`: the current plan tree.
`autopilot plan pin|unpin [PROJECT] NODE`, `autopilot plan pins [PROJECT]`: the sections every agent of
the project receives (blueprints.pinning; pinning needs the owner role).
`autopilot plan search PROJECT QUERY [--limit N] [--json]`: full-text search over its sections.
`autopilot plan summarize PROJECT [--llm] [--json]`: summarize the sections whose content has no summary
yet (extractive, or with the manager-role model), as a summaries job run here."""

from __future__ import annotations

from django.core.management import CommandError

from autopilot.cli_support import AutopilotCommand
from autopilot.models import Role
from autopilot.permissions import require_role
from blueprints.pinning import explicit_pins, pinned_by_name, pinned_indexes, plan_node_pin
from blueprints.search import search_sections
from blueprints.selectors import node_get, tree_index
from blueprints.tree import archived_by_hand
from runs.section_summaries import summary_job_create, summary_job_run

FIELDS = (
    "id",
    "parent_id",
    "kind",
    "origin",
    "level",
    "depth",
    "title",
    "anchor",
    "start",
    "end",
    "status",
    "change",
    "checked",
    "priority",
    "blueprint_id",
)


class Command(AutopilotCommand):
    help = "The plan tree of the project's active blueprint."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        self.add_action(sub, "show", "show the plan tree (indented; --json lists every node)", project=True)
        pin = self.add_action(sub, "pin", "pin a section into every agent's context (owner)", project=True)
        pin.add_argument("node", metavar="NODE", help="The node's id, anchor or title.")
        unpin = self.add_action(
            sub, "unpin", "keep a section out of every agent's context (owner)", project=True
        )
        unpin.add_argument("node", metavar="NODE", help="The node's id, anchor or title.")
        unpin.add_argument(
            "--default",
            action="store_true",
            help="Go back to the default (pinned when its heading is named like conventions, glossary…).",
        )
        self.add_action(sub, "pins", "list the sections pinned into every agent's context", project=True)
        search = self.add_action(sub, "search", "full-text search over the current sections", project=True)
        search.add_argument("query", metavar="QUERY", help="The words to find (quote several words).")
        search.add_argument("--limit", type=int, default=10, help="At most N sections (1-50, default 10).")
        summarize = self.add_action(
            sub, "summarize", "summarize the sections whose content has no summary yet", project=True
        )
        summarize.add_argument(
            "--llm", action="store_true", help="With the project's manager-role model (cost recorded)."
        )

    def handle(self, *args, **options):
        self.as_json = bool(options.get("json"))
        actor = self.actor(options)
        project = self.project(options.get("project"), options)
        if options["action"] == "summarize":
            if actor is not None:
                require_role(actor, project, Role.OPERATOR)
            job = summary_job_create(project=project, llm=options["llm"], actor=actor, enqueue=False)
            job = summary_job_run(job_id=job.pk)
            if job.status != job.Status.SUCCEEDED:
                raise CommandError(f"Summaries job #{job.pk} failed: {job.error}")
            counts = job.counts
            self.emit(
                {"project": project.pk, "job": job.pk, "kind": job.kind, "model": job.model, **counts},
                f"{counts['summarized']} sections summarized, {counts['cached']} kept "
                f"({counts['sections']} in the plan; job #{job.pk}, {job.kind}).",
            )
            return
        if actor is not None:
            require_role(actor, project, Role.VIEWER)
        if options["action"] in ("pin", "unpin"):
            return self._pin(project, options, actor)
        if options["action"] == "pins":
            return self._pins(project)
        if options["action"] == "search":
            self._search(project, options["query"], options["limit"])
            return
        rows = self._rows(project)
        if self.as_json:
            nodes = [dict(zip(FIELDS, row, strict=True)) for row in rows]
            for node in nodes:
                node["parent"] = node.pop("parent_id")
                node["blueprint"] = node.pop("blueprint_id")
            self.emit({"project": project.pk, "nodes": nodes})
            return
        if not rows:
            self.emit({}, f"{project.name} has no plan yet: autopilot blueprint ingest {project.slug} FILE")
            return
        lines = []
        for row in rows:
            node = dict(zip(FIELDS, row, strict=True))
            box = "" if node["checked"] is None else ("[x] " if node["checked"] else "[ ] ")
            lines.append(
                f"{'  ' * (node['depth'] - 1)}{box}{node['title'] or '(untitled)'}  "
                f"<{node['kind']} #{node['id']}>"
            )
        self.stdout.write("\n".join(lines))

    def _pin(self, project, options, actor) -> None:
        node = node_get(project, options["node"])
        pinned = True if options["action"] == "pin" else (None if options.get("default") else False)
        node = plan_node_pin(node=node, pinned=pinned, actor=actor)
        effective = (
            pinned
            if pinned is not None
            else pinned_by_name(node.title, node.depth, node.origin == "checklist")
        )
        state = "pinned" if effective else "not pinned"
        how = "by hand" if pinned is not None else "by its heading's name (the default)"
        self.emit(
            {
                "id": node.pk,
                "title": node.title,
                "anchor": node.anchor,
                "pinned": pinned,
                "in_context": effective,
            },
            f"{node.title} ({node.anchor}): {state} {how}",
        )

    def _pins(self, project) -> None:
        blueprint, layout, _ = tree_index(project)
        explicit = explicit_pins(project.pk)
        rows = []
        if layout is not None:
            for i in pinned_indexes(project.pk, layout, archived_by_hand(project.pk)):
                node_id = layout.ids[i]
                rows.append(
                    {
                        "id": node_id,
                        "title": layout.titles[i],
                        "anchor": layout.anchors[i],
                        "source": "by hand" if explicit.get(node_id) else "by name",
                    }
                )
        excluded = [node_id for node_id, pinned in explicit.items() if not pinned]
        text = "\n".join(f"#{r['id']}  {r['title']}  ({r['anchor']})  {r['source']}" for r in rows)
        self.emit(
            {"project": project.pk, "pinned": rows, "unpinned_by_hand": excluded},
            text or f"{project.name}: no section is pinned",
        )

    def _search(self, project, query: str, limit: int) -> None:
        hits = search_sections(project, query, limit=limit)
        if self.as_json:
            self.emit({"project": project.pk, "query": query, "results": [h.as_dict() for h in hits]})
            return
        if not hits:
            self.stdout.write(f"No section of {project.name}'s plan contains: {query}")
            return
        lines = []
        for hit in hits:
            lines.append(f"{hit.title or '(untitled)'}  <#{hit.node_id} {hit.anchor}>")
            lines.append(f"    {hit.snippet}")
        self.stdout.write("\n".join(lines))

    @staticmethod
    def _rows(project) -> list[tuple]:
        blueprint, layout, present = tree_index(project)
        return [
            (
                layout.ids[i],
                layout.parent_id(i),
                layout.kind(i),
                layout.origin(i),
                layout.levels[i],
                layout.depths[i],
                layout.titles[i],
                layout.anchors[i],
                layout.starts[i],
                layout.ends[i],
                status,
                layout.change(i),
                layout.checked(i),
                priority,
                blueprint.pk,
            )
            for i, status, priority in present
        ]
