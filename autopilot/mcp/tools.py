"""The MCP server's operations, as plain functions of (principal, arguments) -> JSON-able dict.

Thin like every door: resolve the project / task / run the caller may see (the API's role checks:
autopilot.permissions, 404 for what a caller may not see, 403 naming the role a write needs), call
one service or selector, shape a small answer. Domain errors (autopilot.errors) propagate; the
server turns them into MCP tool errors. Every answer is redacted (runs.redaction) before it leaves.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from autopilot import selectors as core_selectors
from autopilot.cli_support import to_jsonable
from autopilot.errors import ApplicationError, NotFound, PermissionDenied
from autopilot.manager import queue
from autopilot.mcp.auth import Principal
from autopilot.models import ROLE_RANK, Project, Role
from autopilot.permissions import require_role
from blueprints import selectors as task_selectors
from blueprints import services as task_services
from blueprints.filtersets import TaskFilterSet
from blueprints.models import Task
from runs import selectors as run_selectors
from runs import services as run_services
from runs.models import ExecutionRun, ExecutionStep
from runs.redaction import redact_data

MAX_PAGE = 100
SCOPED_ROLE = Role.OPERATOR
SPEC_LIMIT = 12_000
STEP_OUTPUT_LIMIT = 4_000


# --- Who may see what ---------------------------------------------------------------------------


def _refuse_scoped(principal: Principal, what: str) -> None:
    if principal.scoped:
        raise PermissionDenied(f"An agent's run token cannot {what}; ask a human operator.")


def project_of(principal: Principal, identifier: str | int | None, minimum: str = Role.VIEWER) -> Project:
    """The project named by id, slug or name that the caller may use with at least `minimum`."""
    if principal.scoped:
        project = Project.objects.get(pk=principal.project_id)
        if identifier not in (None, "") and str(identifier) not in (
            str(project.pk),
            project.slug,
            project.name,
        ):
            raise NotFound(f"No project '{identifier}' you can see (give its id, slug or name).")
        if ROLE_RANK[Role(minimum)] > ROLE_RANK[SCOPED_ROLE]:
            raise PermissionDenied(
                f"This needs the {minimum} role on project '{project.name}'; a run token is {SCOPED_ROLE}."
            )
        return project
    if identifier in (None, ""):
        raise ApplicationError("project is required (its id, slug or name).")
    project = core_selectors.project_get_visible(user=principal.user, identifier=identifier)
    require_role(principal.user, project, minimum)
    return project


def task_of(principal: Principal, task_id: int | None, minimum: str = Role.VIEWER) -> Task:
    """A task the caller may see (a run token: of its project; writes only to the run's own task)."""
    if task_id is None:
        if principal.task_id is None:
            raise ApplicationError("task is required (its id).")
        task_id = principal.task_id
    if principal.scoped:
        task = (
            Task.objects.select_related("project", "plan_node")
            .filter(pk=task_id, project_id=principal.project_id)
            .first()
        )
        if task is None:
            raise NotFound(f"Task {task_id} was not found.")
        if minimum != Role.VIEWER and task.pk != principal.task_id:
            raise PermissionDenied(f"A run token can change only its own task (#{principal.task_id}).")
        return task
    task = (
        task_selectors.visible_tasks(principal.user)
        .select_related("project", "plan_node")
        .filter(pk=task_id)
        .first()
    )
    if task is None:
        raise NotFound(f"Task {task_id} was not found.")
    require_role(principal.user, task.project, minimum)
    return task


def run_of(principal: Principal, run_id: int | None, minimum: str = Role.VIEWER) -> ExecutionRun:
    if run_id is None:
        if principal.run_id is None:
            raise ApplicationError("run is required (its id).")
        run_id = principal.run_id
    if principal.scoped:
        run = (
            ExecutionRun.objects.select_related("project", "task")
            .filter(pk=run_id, project_id=principal.project_id)
            .first()
        )
    else:
        run = run_selectors.runs_visible_to(principal.user).filter(pk=run_id).first()
    if run is None:
        raise NotFound(f"Run {run_id} was not found.")
    if not principal.scoped:
        require_role(principal.user, run.project, minimum)
    return run


# --- Shapes ---------------------------------------------------------------------------------------


def task_dict(task: Task, *, full: bool = False) -> dict[str, Any]:
    data = {
        "id": task.pk,
        "project": task.project_id,
        "title": task.title,
        "status": task.status,
        "priority": task.priority,
        "complexity": task.complexity,
        "plan_node": task.plan_node_id,
    }
    if full:
        data.update(
            body=task.body,
            kind=task.kind,
            attempts=task.attempts,
            needs_review=task.needs_review,
            depends_on=list(task.dependency_links.values_list("depends_on_id", flat=True)),
            created_at=task.created_at,
            started_at=task.started_at,
            completed_at=task.completed_at,
        )
    return data


def run_dict(run: ExecutionRun) -> dict[str, Any]:
    data = run_selectors.run_to_dict(run, steps=[])
    data.pop("steps")
    data["steps"] = run.last_step_seq
    data["queue_position"] = queue.queue_position(run)
    return data


def step_dict(step: ExecutionStep) -> dict[str, Any]:
    output = step.output or ""
    return {
        "seq": step.seq,
        "kind": step.kind,
        "tool": step.tool_name,
        "status": step.status,
        "input": step.input,
        "output": output[:STEP_OUTPUT_LIMIT],
        "output_truncated": step.output_truncated or len(output) > STEP_OUTPUT_LIMIT,
        "risky": step.risky,
        "diff": (step.diff or "")[:STEP_OUTPUT_LIMIT],
        "ended_at": step.ended_at,
    }


def clean(data: Any) -> Any:
    """JSON-able and redacted: what leaves the server."""
    return redact_data(to_jsonable(data))


# --- Tasks ----------------------------------------------------------------------------------------


def task_next(principal: Principal, *, project: str | None = None) -> dict:
    found = project_of(principal, project)
    task, reason = task_selectors.next_task(found)
    return {"task": task_dict(task) if task else None, "reason": reason}


def task_get(principal: Principal, *, task: int | None = None) -> dict:
    found = task_of(principal, task)
    data = task_dict(found, full=True)
    if found.plan_node_id:
        node = found.plan_node
        data["plan_node_title"] = node.title
        data["spec"] = task_selectors.section_text(node, limit=SPEC_LIMIT)
    return data


def task_list(
    principal: Principal,
    *,
    project: str | None = None,
    status: list[str] | None = None,
    plan_node: int | None = None,
    search: str | None = None,
    limit: int = 20,
    offset: int = 0,
) -> dict:
    found = project_of(principal, project)
    filters: dict[str, Any] = {}
    if status:
        filters["status"] = status
    if plan_node is not None:
        filters["plan_node"] = plan_node
    if search:
        filters["q"] = search
    filterset = TaskFilterSet(data=filters, queryset=Task.objects.filter(project=found))
    if not filterset.is_valid():
        problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in filterset.errors.items())
        raise ApplicationError(f"Invalid filter: {problems}")
    queryset = filterset.qs.order_by(*Task.RANKING)
    total = queryset.count()
    page = list(queryset[offset : offset + limit])
    after = offset + len(page)
    return {
        "count": total,
        "results": [task_dict(t) for t in page],
        "next_offset": after if after < total else None,
    }


def task_create(
    principal: Principal,
    *,
    title: str,
    project: str | None = None,
    body: str = "",
    priority: int | None = None,
    complexity: int = 3,
    plan_node: int | None = None,
    follow_up_of: int | None = None,
) -> dict:
    if principal.scoped and follow_up_of is None and plan_node is None:
        follow_up_of = principal.task_id
    if follow_up_of is not None:
        parent = task_of(principal, follow_up_of)
        project_of(principal, parent.project_id if project in (None, "") else project, Role.OPERATOR)
        if project not in (None, "") and str(project) not in (
            str(parent.project_id),
            parent.project.slug,
            parent.project.name,
        ):
            raise ApplicationError(f"Task #{parent.pk} belongs to another project.")
        created = task_services.task_create_follow_up(
            of=parent,
            title=title,
            body=body,
            priority=priority,
            complexity=complexity,
            actor=principal.user,
        )
    else:
        found = project_of(principal, project, Role.OPERATOR)
        created = task_services.task_create(
            project=found,
            title=title,
            body=body,
            priority=2 if priority is None else priority,
            complexity=complexity,
            plan_node=plan_node,
            actor=principal.user,
        )
    return task_dict(created, full=True)


def task_update(
    principal: Principal,
    *,
    task: int | None = None,
    title: str | None = None,
    body: str | None = None,
    priority: int | None = None,
    complexity: int | None = None,
    status: str | None = None,
    reason: str = "",
) -> dict:
    found = task_of(principal, task, Role.OPERATOR)
    changes = {
        k: v
        for k, v in {"title": title, "body": body, "priority": priority, "complexity": complexity}.items()
        if v is not None
    }
    if not changes and status is None:
        raise ApplicationError("Nothing to change: give title, body, priority, complexity or status.")
    with transaction.atomic():
        if changes:
            found = task_services.task_update(task=found, actor=principal.user, **changes)
        if status is not None:
            found = task_services.task_transition(task=found, to=status, actor=principal.user, reason=reason)
    return task_dict(Task.objects.get(pk=found.pk), full=True)


def task_complete(
    principal: Principal, *, task: int | None = None, summary: str = "", status: str = "done"
) -> dict:
    if status not in Task.DELIVERED:
        raise ApplicationError(f"status must be 'done' or 'review', got '{status}'.")
    found = task_of(principal, task, Role.OPERATOR)
    found = task_services.task_transition(
        task=found, to=status, actor=principal.user, reason=summary or "completed through MCP"
    )
    return task_dict(found)


# --- Runs -----------------------------------------------------------------------------------------


def run_start(
    principal: Principal,
    *,
    project: str | None = None,
    prompt: str = "",
    task: int | None = None,
    agent: str | None = None,
    model: str | None = None,
    role: str = "code",
    budget_usd: float | None = None,
) -> dict:
    _refuse_scoped(principal, "start runs")
    found = (
        project_of(principal, project, Role.OPERATOR) if task is None or project not in (None, "") else None
    )
    linked = task_of(principal, task) if task is not None else None
    if linked is not None:
        found = found or project_of(principal, linked.project_id, Role.OPERATOR)
        if linked.project_id != found.pk:
            raise ApplicationError(f"Task #{linked.pk} belongs to another project.")
    run = run_services.run_create(
        project=found,
        prompt=prompt,
        task=linked,
        role=role,
        agent_backend=agent,
        model=model,
        budget_usd=budget_usd,
        actor=principal.user,
    )
    return run_dict(run)


def run_status(principal: Principal, *, run: int | None = None) -> dict:
    return run_dict(run_of(principal, run))


def run_logs(principal: Principal, *, run: int | None = None, after: int = 0, limit: int = 20) -> dict:
    found = run_of(principal, run)
    steps = list(ExecutionStep.objects.filter(run=found, seq__gt=after).order_by("seq")[: limit + 1])
    more = len(steps) > limit
    steps = steps[:limit]
    return {
        "run": found.pk,
        "status": found.status,
        "steps": [step_dict(s) for s in steps],
        "next_after": steps[-1].seq if more else None,
    }


def run_message(principal: Principal, *, run: int, body: str) -> dict:
    _refuse_scoped(principal, "message runs")
    found = run_of(principal, run, Role.OPERATOR)
    message = run_services.run_message(run=found, body=body, actor=principal.user)
    return {
        "id": message.pk,
        "run": found.pk,
        "body": message.body,
        "delivered": message.delivered_at is not None,
    }


def run_stop(principal: Principal, *, run: int, reason: str = "", force: bool = False) -> dict:
    _refuse_scoped(principal, "stop runs")
    found = run_of(principal, run, Role.OPERATOR)
    return run_dict(run_services.run_stop(run=found, actor=principal.user, reason=reason, force=force))


def queue_status(principal: Principal, *, project: str | None = None) -> dict:
    if project not in (None, "") or principal.scoped:
        projects = Project.objects.filter(pk=project_of(principal, project).pk)
    else:
        projects = core_selectors.project_list(user=principal.user)
    data = queue.queue_status(projects=projects, limit=MAX_PAGE)
    for row in data["runs"]:
        row.pop("created_at", None)
    return data
