"""`autopilot task create|list|show|edit|delete|ready|next|depend|generate|refresh|review|pr-body PROJECT …`
(each with --json)."""

from __future__ import annotations

from autopilot.cli_support import AutopilotCommand, parse_priority
from autopilot.errors import ApplicationError, NotFound
from autopilot.models import Role
from autopilot.permissions import require_role
from blueprints import selectors, services
from blueprints.filtersets import TaskFilterSet
from blueprints.models import Blueprint, Task
from runs import integration, integration_selectors
from runs.models import TaskReview

WRITES = {"create", "edit", "delete", "depend", "generate", "refresh", "review"}


def task_data(task: Task, *, depends_on: list[int] | None = None) -> dict:
    node = task.plan_node if task.plan_node_id else None
    data = {
        "id": task.pk,
        "project": task.project_id,
        "title": task.title,
        "kind": task.kind,
        "status": task.status,
        "priority": task.priority,
        "complexity": task.complexity,
        "learned_priority": task.learned_priority,
        "plan_order": task.plan_order,
        "plan_node": task.plan_node_id,
        "plan_node_anchor": node.anchor if node is not None else None,
        "needs_review": task.needs_review,
        "removed_from_spec": task.removed_from_spec,
        "source_key": task.source_key,
        "attempts": task.attempts,
        "created_at": task.created_at,
        "updated_at": task.updated_at,
    }
    if depends_on is not None:
        data["depends_on"] = depends_on
    return data


def line(task: Task) -> str:
    flags = "".join(
        f" [{f}]"
        for f, on in (
            ("review", task.needs_review),
            ("removed", task.removed_from_spec),
            ("milestone", task.kind == Task.Kind.MILESTONE),
        )
        if on
    )
    return f"#{task.pk:<6} {task.status:<11} P{task.priority} C{task.complexity:<2} {task.title}{flags}"


class Command(AutopilotCommand):
    help = "Tasks and their dependencies: create, list, show, edit, delete, ready, next, depend, generate."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        def add(name, help_text):
            return self.add_action(sub, name, help_text, project=True)

        p = add("create", "create a task by hand")
        p.add_argument("title")
        p.add_argument("--body", default="")
        p.add_argument(
            "--priority",
            type=parse_priority,
            default=2,
            help="0–5 or lowest, low, medium, high, highest, urgent; default 2 (medium)",
        )
        p.add_argument("--complexity", type=int, default=3, help="1 – 10; default 3")
        p.add_argument("--node", help="plan node (id, anchor or title) to link the task to")

        p = add("list", "list tasks (filters as on the board)")
        p.add_argument("--status", action="append", help="status (repeat or comma-separate for several)")
        p.add_argument("--node", help="only tasks of this plan node's subtree (id, anchor or title)")
        p.add_argument("--min-priority", type=parse_priority)
        p.add_argument("--needs-review", action="store_true")
        p.add_argument("--limit", type=int, default=1000)

        for name in ("show", "view"):
            p = add(name, "show a task with its dependencies (upstream and downstream)")
            p.add_argument("task", help="task id")

        p = add("edit", "edit a task's fields, or move it to another status")
        p.add_argument("task", help="task id")
        p.add_argument("--title")
        p.add_argument("--body")
        p.add_argument("--priority", type=parse_priority, help="0–5 or lowest … urgent")
        p.add_argument("--complexity", type=int)
        p.add_argument("--node", help="plan node (id, anchor or title); 'none' to unlink")
        p.add_argument("--status", choices=Task.Status.values)
        p.add_argument("--reason", default="", help="why (recorded with a status change)")

        p = add("delete", "delete a task")
        p.add_argument("task", help="task id")

        p = add("ready", "tasks whose dependencies are all done, best first")
        p.add_argument("--limit", type=int, default=200)

        add("next", "the single best ready task, and why")

        p = add("depend", "make TASK depend on OTHER (or --remove it)")
        p.add_argument("task", help="task id")
        p.add_argument("--on", required=True, dest="on", help="the task it depends on (id)")
        p.add_argument("--remove", action="store_true")

        p = add("generate", "generate tasks and dependencies from the active blueprint (idempotent)")
        p.add_argument("--node", help="only this plan node's subtree (id, anchor or title)")
        p.add_argument("--blueprint", type=int, help="a blueprint version id instead of the active one")

        add("refresh", "re-derive the readiness of every task (the tick re-derives only the stale ones)")

        p = add("review", "decide on a task's delivered work: approve, request changes, or reject")
        p.add_argument("task", help="task id")
        decision = p.add_mutually_exclusive_group(required=True)
        decision.add_argument("--approve", action="store_true", help="merge it (the merge queue)")
        decision.add_argument(
            "--request-changes",
            metavar="COMMENT",
            help="a follow-up run on the same branch, its prompt carrying COMMENT",
        )
        decision.add_argument("--reject", action="store_true", help="back to todo (or --cancel it)")
        p.add_argument("--comment", default="", help="a comment with --approve or --reject")
        p.add_argument("--cancel", action="store_true", help="with --reject: cancel the task")

        p = add("pr-body", "a ready pull-request description of the task's work (Markdown)")
        p.add_argument("task", help="task id")

    def handle(self, *args, **options):
        self.as_json = bool(options.get("json"))
        actor = self.actor(options)
        project = self.project(options.get("project"), options)
        action = {"view": "show", "pr-body": "pr_body"}.get(options["action"], options["action"])
        if actor is not None:
            require_role(actor, project, Role.OPERATOR if action in WRITES else Role.VIEWER)
        try:
            getattr(self, f"do_{action}")(project, actor, options)
        except NotFound as exc:
            if not exc.message.startswith("No task"):
                raise
            name = "issue" if self.__module__.endswith(".issue") else "task"
            raise NotFound(f"{exc.message.rstrip('.')} (list them with `autopilot {name} list`).") from None

    # -- actions ---------------------------------------------------------------------------------
    def do_create(self, project, actor, options):
        node = selectors.node_get(project, options["node"]) if options.get("node") else None
        task = services.task_create(
            project=project,
            title=options["title"],
            body=options["body"],
            priority=options["priority"],
            complexity=options["complexity"],
            plan_node=node,
            actor=actor,
        )
        task = Task.objects.select_related("plan_node").get(pk=task.pk)
        self.emit(task_data(task, depends_on=[]), f"created {line(task)}")

    def do_list(self, project, actor, options):
        data: dict = {}
        statuses = [s for value in options.get("status") or [] for s in value.split(",") if s]
        bad = [s for s in statuses if s not in Task.Status.values]
        if bad:
            raise ApplicationError(
                f"Unknown status {', '.join(bad)}; choose from {', '.join(Task.Status.values)}."
            )
        if statuses:
            data["status"] = statuses
        if options.get("node"):
            data["plan_node"] = str(selectors.node_get(project, options["node"]).pk)
        if options.get("min_priority") is not None:
            data["min_priority"] = str(options["min_priority"])
        if options.get("needs_review"):
            data["needs_review"] = "true"
        filterset = TaskFilterSet(data=data, queryset=Task.objects.filter(project=project))
        if not filterset.is_valid():
            raise ApplicationError(f"Bad filter: {filterset.errors.as_text()}")
        qs = filterset.qs.select_related("plan_node").order_by("plan_order", "id")
        total = qs.count()
        tasks = list(qs[: options["limit"]])
        rows = [task_data(t) for t in tasks]
        text = "\n".join(line(t) for t in tasks) or "no tasks"
        if total > len(tasks):
            text += f"\n… {total - len(tasks)} more (raise --limit)"
        self.emit({"count": total, "tasks": rows}, text)

    def do_show(self, project, actor, options):
        task = selectors.task_get(project, options["task"])
        view = selectors.dependency_view(task)
        data = task_data(task, depends_on=[d.depends_on_id for d in view.upstream])
        data["body"] = task.body
        data["ready"] = view.is_ready
        data["upstream"] = [
            {
                "id": d.depends_on_id,
                "title": d.depends_on.title,
                "status": d.depends_on.status,
                "source": d.source,
            }
            for d in view.upstream
        ]
        data["downstream"] = [
            {"id": d.task_id, "title": d.task.title, "status": d.task.status, "source": d.source}
            for d in view.downstream
        ]
        text = [line(task)]
        if task.plan_node_id:
            text.append(f"  plan node: {task.plan_node.anchor}")
        text.append(f"  depends on ({len(view.upstream)}, {len(view.blocking)} unfinished):")
        text += [f"    #{u['id']} [{u['status']}] {u['title']} ({u['source']})" for u in data["upstream"]]
        text.append(f"  needed by ({len(view.downstream)}):")
        text += [f"    #{d['id']} [{d['status']}] {d['title']} ({d['source']})" for d in data["downstream"]]
        if task.body:
            text += ["", task.body[:2000]]
        self.emit(data, "\n".join(text))

    def do_edit(self, project, actor, options):
        task = selectors.task_get(project, options["task"])
        changes = {
            k: options[k] for k in ("title", "body", "priority", "complexity") if options.get(k) is not None
        }
        if options.get("node") is not None:
            changes["plan_node"] = (
                None if options["node"].lower() == "none" else selectors.node_get(project, options["node"])
            )
        if not changes and not options.get("status"):
            raise ApplicationError(
                "Nothing to change: give --title, --body, --priority, --complexity, --node or --status."
            )
        if changes:
            task = services.task_update(task=task, actor=actor, **changes)
        if options.get("status") and options["status"] != task.status:
            task = services.task_transition(
                task=task, to=options["status"], actor=actor, reason=options["reason"]
            )
        task = Task.objects.select_related("plan_node").get(pk=task.pk)
        self.emit(task_data(task), f"updated {line(task)}")

    def do_delete(self, project, actor, options):
        task = selectors.task_get(project, options["task"])
        data = {"id": task.pk, "deleted": True}
        services.task_delete(task=task, actor=actor)
        self.emit(data, f"deleted task #{data['id']}")

    def do_ready(self, project, actor, options):
        qs = selectors.ready_tasks(project).select_related("plan_node")
        total = qs.count()
        tasks = list(qs[: options["limit"]])
        self.emit(
            {"count": total, "tasks": [task_data(t) for t in tasks]},
            "\n".join(line(t) for t in tasks) or "no task is ready",
        )

    def do_next(self, project, actor, options):
        task, reason = selectors.next_task(project)
        if task is None:
            self.emit({"task": None, "reason": reason}, reason)
            return
        self.emit({"task": task_data(task), "reason": reason}, f"{line(task)}\n  {reason}")

    def do_depend(self, project, actor, options):
        task = selectors.task_get(project, options["task"])
        other = selectors.task_get(project, options["on"])
        if options["remove"]:
            services.dependency_remove(task=task, depends_on=other, actor=actor)
            self.emit(
                {"task": task.pk, "depends_on": other.pk, "removed": True},
                f"#{task.pk} no longer depends on #{other.pk}",
            )
            return
        dependency = services.dependency_add(task=task, depends_on=other, actor=actor)
        self.emit(
            {"id": dependency.pk, "task": task.pk, "depends_on": other.pk, "source": dependency.source},
            f"#{task.pk} '{task.title}' now depends on #{other.pk} '{other.title}'",
        )

    def do_generate(self, project, actor, options):
        if options.get("blueprint"):
            blueprint = Blueprint.objects.filter(project=project, pk=options["blueprint"]).first()
            if blueprint is None:
                raise ApplicationError(f"No blueprint {options['blueprint']} in project '{project.name}'.")
        else:
            blueprint = (
                Blueprint.objects.filter(project=project, status=Blueprint.Status.ACTIVE).first()
                or Blueprint.objects.filter(project=project).order_by("-version").first()
            )
            if blueprint is None:
                raise ApplicationError(f"Project '{project.name}' has no blueprint yet; ingest one first.")
        if options.get("node"):
            node = selectors.node_get(project, options["node"])
            result = services.generate_for_node(node=node, actor=actor)
        else:
            result = services.generate_for_blueprint(blueprint=blueprint, actor=actor)
        data = {"blueprint": blueprint.pk, **result.as_dict()}
        self.emit(
            data,
            (
                f"{result.tasks_created} task(s) created ({result.milestones_created} milestone(s)), "
                f"{result.dependencies_created} dependenc(ies) added, {result.dependencies_removed} removed; "
                f"{result.tasks_total} generated task(s) in total"
                + (f"; {len(result.unresolved)} reference(s) not understood" if result.unresolved else "")
            ),
        )

    def do_refresh(self, project, actor, options):
        counts = services.refresh_ready(project)
        self.emit(counts, ", ".join(f"{k}: {v}" for k, v in counts.items()))

    def do_review(self, project, actor, options):
        task = selectors.task_get(project, options["task"])
        if options["approve"]:
            decision, comment = TaskReview.Decision.APPROVED, options["comment"]
        elif options["reject"]:
            decision, comment = TaskReview.Decision.REJECTED, options["comment"]
        else:
            decision, comment = TaskReview.Decision.CHANGES_REQUESTED, options["request_changes"]
            if not comment.strip():
                raise ApplicationError("--request-changes needs a comment saying what to change.")
        if options["cancel"] and decision != TaskReview.Decision.REJECTED:
            raise ApplicationError("--cancel goes with --reject only.")
        review = integration.review(
            task, actor=actor, decision=decision, comment=comment.strip(), cancel=options["cancel"]
        )
        task.refresh_from_db()
        data = {
            "id": review.pk,
            "task": task.pk,
            "decision": review.decision,
            "comment": review.comment,
            "task_status": task.status,
            "created_at": review.created_at,
        }
        self.emit(data, f"{review.get_decision_display().lower()}: {line(task)}")

    def do_pr_body(self, project, actor, options):
        task = selectors.task_get(project, options["task"])
        body = integration_selectors.pr_body(task)
        self.emit({"task": task.pk, "markdown": body}, body.rstrip("\n"))
