"""`autopilot integration status|list|show|retry|skip|resolve PROJECT …` (each with --json).

The merge queue of a project: what is queued (with positions), the merge in flight and its test
output, recent merges, conflicts and test failures waiting, and the integration branch against the
base. Viewers read; retry, skip and resolve need the operator role (runs.integration checks it too).
"""

from __future__ import annotations

from autopilot.cli_support import AutopilotCommand, format_table
from autopilot.errors import ApplicationError
from autopilot.models import Role
from autopilot.permissions import require_role
from runs import integration, integration_selectors
from runs.api.integration import IntegrationQueueSerializer, IntegrationSerializer
from runs.models import Integration

WRITES = {"retry", "skip", "resolve"}


def _short(sha: str) -> str:
    return sha[:10] if sha else "—"


def _line(item: Integration) -> str:
    tests = {True: "tests passed", False: "tests failed", None: ""}[item.tests_passed]
    parts = [f"#{item.pk}", item.status, f"task #{item.task_id} {item.task.title}", item.branch]
    if item.merge_commit:
        parts.append(f"→ {_short(item.merge_commit)}")
    if tests:
        parts.append(tests)
    if item.status_reason and item.status in Integration.FAILED:
        parts.append(f"({item.status_reason.splitlines()[0][:120]})")
    return "  ".join(parts)


class Command(AutopilotCommand):
    help = "The merge queue: status, history, and retry / skip / resolve a merge."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(
            dest="action", required=True, metavar="{status,list,show,retry,skip,resolve}"
        )

        def add(name, help_text):
            return self.add_action(sub, name, help_text, project=True)

        p = add("status", "the queue with positions, the merge in flight, recent merges, what waits")
        p.add_argument("--output", action="store_true", help="Also print the in-flight test output.")
        p = add("list", "the project's merges, newest first")
        p.add_argument("--status", action="append", help="status (repeat or comma-separate for several)")
        p.add_argument("--task", type=int, help="only this task's merges")
        p.add_argument("--limit", type=int, default=50)
        p = add("show", "one merge: its test output and conflicts")
        p.add_argument("integration", type=int, help="integration id")
        p = add("retry", "put a failed merge (conflict, tests failed) back in the queue")
        p.add_argument("integration", type=int, help="integration id")
        p = add("skip", "take a merge out of the queue, or give up on a failed one")
        p.add_argument("integration", type=int, help="integration id")
        p.add_argument("--reason", default="", help="why (recorded in the event)")
        p = add("resolve", "the conflict is fixed on the task's branch: merge it again")
        p.add_argument("integration", type=int, help="integration id")

    def handle(self, *args, **options):
        self.as_json = bool(options.get("json"))
        actor = self.actor(options)
        project = self.project(options.get("project"), options, register=False)
        action = options["action"]
        if actor is not None:
            require_role(actor, project, Role.OPERATOR if action in WRITES else Role.VIEWER)
        getattr(self, f"do_{action}")(project, actor, options)

    def do_status(self, project, actor, options):
        status = integration_selectors.queue_status(project)
        data = IntegrationQueueSerializer(status).data
        head = status.head
        target = project.integration_branch + (" (the base branch)" if project.integrates_into_base else "")
        text = [
            f"{project.name}: integrating into {target} by {project.merge_strategy}; "
            f"review {'required' if integration.review_needed(project) else 'not required'}; "
            f"tests: {project.effective_integration_test_command or '—'}"
        ]
        if head.problem:
            text.append(f"  branch: {head.problem}")
        elif not project.integrates_into_base:
            stat = head.diff_stat
            text.append(
                f"  branch: {_short(head.integration_head)}, {head.ahead} commit(s) ahead of "
                f"{project.base_branch} ({head.behind} behind); {len(stat['files'])} file(s) "
                f"+{stat['added']} −{stat['removed']}"
            )
        if status.in_flight:
            text.append(f"  in flight: {_line(status.in_flight)}")
            if options.get("output") and status.in_flight.test_output:
                text += ["    " + line for line in status.in_flight.test_output.splitlines()[-40:]]
        text.append(f"  queue ({len(status.queue)}):")
        text += [f"    {item.position}. {_line(item)}" for item in status.queue] or ["    (empty)"]
        text.append(f"  waiting for a reaction ({len(status.waiting)}):")
        for item in status.waiting:
            text.append(f"    {_line(item)}")
            if item.conflict_files:
                text.append(f"      conflicts: {', '.join(item.conflict_files)}")
        text.append(f"  recent merges ({len(status.recent)}):")
        text += [f"    {_line(item)}" for item in status.recent] or ["    (none yet)"]
        self.emit(data, "\n".join(text))

    def do_list(self, project, actor, options):
        statuses = [s for value in options.get("status") or [] for s in value.split(",") if s]
        bad = [s for s in statuses if s not in Integration.Status.values]
        if bad:
            raise ApplicationError(
                f"Unknown status {', '.join(bad)}; choose from {', '.join(Integration.Status.values)}."
            )
        if options["limit"] < 1:
            raise ApplicationError("--limit must be at least 1.")
        qs = integration_selectors.integrations_of(project).order_by("-queued_at", "-id")
        if statuses:
            qs = qs.filter(status__in=statuses)
        if options.get("task"):
            qs = qs.filter(task_id=options["task"])
        total = qs.count()
        items = list(qs[: options["limit"]])
        rows = [
            [
                item.pk,
                item.status,
                f"#{item.task_id} {item.task.title[:40]}",
                item.branch,
                _short(item.merge_commit),
                {True: "passed", False: "failed", None: "—"}[item.tests_passed],
                item.queued_at.strftime("%Y-%m-%d %H:%M"),
            ]
            for item in items
        ]
        text = (
            format_table(rows, ["ID", "STATUS", "TASK", "BRANCH", "MERGE", "TESTS", "QUEUED"])
            if rows
            else "no merges yet"
        )
        self.emit({"count": total, "results": IntegrationSerializer(items, many=True).data}, text)

    def do_show(self, project, actor, options):
        item = integration_selectors.integration_get(project, options["integration"])
        text = [_line(item), f"  into {item.target_branch} by {item.strategy or project.merge_strategy}"]
        if item.onto_commit:
            text.append(f"  onto {_short(item.onto_commit)}")
        if item.conflict_files:
            text.append(f"  conflicting files: {', '.join(item.conflict_files)}")
        if item.conflict_detail:
            text += ["", item.conflict_detail]
        if item.test_output:
            text += ["", f"$ {item.test_command}", item.test_output]
        self.emit(IntegrationSerializer(item).data, "\n".join(text))

    def _act(self, project, options, call, verb: str) -> None:
        item = integration_selectors.integration_get(project, options["integration"])
        result = call(item)
        self.emit(IntegrationSerializer(result).data, f"{verb} {_line(result)}")

    def do_retry(self, project, actor, options):
        self._act(project, options, lambda item: integration.retry(item, actor=actor), "retried")

    def do_skip(self, project, actor, options):
        reason = options["reason"]
        self._act(
            project, options, lambda item: integration.skip(item, actor=actor, reason=reason), "skipped"
        )

    def do_resolve(self, project, actor, options):
        self._act(project, options, lambda item: integration.resolve(item, actor=actor), "resolved")
