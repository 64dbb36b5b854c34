"""Writes for tasks and their dependencies. Every door (API, CLI, web, MCP) calls these.

Plan generation lives in `blueprints.graph` (generate_tasks); ingestion in `blueprints.ingestion`.
After every change the upper layers are told on commit (autopilot.seams.project_changed).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from autopilot.errors import ApplicationError, NotFound
from autopilot.events import record_event
from autopilot.input_limits import BIGINT_MAX, MAX_TASK_BODY_CHARS, MAX_TITLE_CHARS, check_length
from autopilot.models import Project
from autopilot.redaction import Redactor
from autopilot.seams import project_changed
from autopilot.state import transition
from blueprints.graph import cycle_error, generate_tasks
from blueprints.models import Blueprint, PlanNode, Task, TaskDependency
from blueprints.readiness import mark_dependents_stale, mark_stale, refresh_readiness

EDITABLE_FIELDS = ("title", "body", "priority", "complexity", "plan_node")


def _notify(project_id: int, reason: str) -> None:
    project_changed.send_on_commit(project_id, reason)


def _clean_title(title: Any) -> str:
    if not isinstance(title, str) or not title.strip():
        raise ApplicationError("A task needs a title.")
    title = " ".join(title.split())
    if len(title) > MAX_TITLE_CHARS:
        raise ApplicationError(f"A task title is at most {MAX_TITLE_CHARS} characters (got {len(title)}).")
    return title


def _clean_body(body: Any) -> str:
    body = "" if body is None else str(body)
    check_length(body, "body", MAX_TASK_BODY_CHARS)
    return body


def _clean_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise ApplicationError(f"{name} must be a whole number from {low} to {high}.")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ApplicationError(
            f"{name} must be a whole number from {low} to {high}, got '{value}'."
        ) from None
    if not low <= number <= high:
        raise ApplicationError(f"{name} must be from {low} to {high}, got {number}.")
    return number


def _clean_node(project: Project, plan_node: PlanNode | int | None) -> PlanNode | None:
    if plan_node is None or plan_node == "":
        return None
    if not isinstance(plan_node, PlanNode):
        # Only this project's nodes: another project's node gets the same answer as a missing one.
        node = PlanNode.objects.filter(pk=plan_node, project=project).first() if _is_id(plan_node) else None
        if node is None:
            raise ApplicationError(f"No plan node {plan_node} in this project.")
        plan_node = node
    if plan_node.project_id != project.pk:
        raise ApplicationError(f"Plan node {plan_node.pk} belongs to another project.")
    if plan_node.archived_at is not None:
        raise ApplicationError(f"Plan node '{plan_node.title}' was removed from the spec (archived).")
    return plan_node


def _redact_texts(project: Project, changes: dict[str, Any]) -> dict[str, Any]:
    """A human-written title and body are stored redacted (known secret shapes and the project's .env
    values), computed before the write transaction opens. Bodies generated from a blueprint quote the
    spec verbatim (the spec is the user's own document) and are redacted on their way into a prompt."""
    texts = {k: v for k, v in changes.items() if k in ("title", "body") and isinstance(v, str) and v}
    if not texts:
        return changes
    # The size caps first: a 10 MB body is refused before anything reads it.
    if "body" in texts:
        check_length(texts["body"], "body", MAX_TASK_BODY_CHARS)
    redactor = Redactor.for_project(project)
    return {**changes, **{k: redactor(v) for k, v in texts.items()}}


def _is_id(value: Any) -> bool:
    try:
        return 1 <= int(value) <= BIGINT_MAX
    except (TypeError, ValueError):
        return False


def task_create(
    *,
    project: Project,
    title: str,
    body: str = "",
    priority: int = 2,
    complexity: int = 3,
    plan_node: PlanNode | int | None = None,
    actor=None,
) -> Task:
    texts = _redact_texts(project, {"title": title, "body": body})
    return _task_create(
        project=project,
        title=texts["title"],
        body=texts["body"],
        priority=priority,
        complexity=complexity,
        plan_node=plan_node,
        actor=actor,
    )


@transaction.atomic
def _task_create(
    *,
    project: Project,
    title: str,
    body: str,
    priority: int,
    complexity: int,
    plan_node: PlanNode | int | None,
    actor,
) -> Task:
    node = _clean_node(project, plan_node)
    task = Task.objects.create(
        project=project,
        title=_clean_title(title),
        body=_clean_body(body),
        priority=_clean_int("priority", priority, 0, 5),
        complexity=_clean_int("complexity", complexity, 1, 10),
        plan_node=node,
        plan_order=node.order if node is not None else _next_manual_order(project),
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    record_event(kind="task.created", subject=task, actor=actor, data={"title": task.title})
    _notify(project.pk, "task created")
    return task


@transaction.atomic
def task_create_follow_up(
    *, of: Task, title: str, body: str = "", priority: int | None = None, complexity: int = 3, actor=None
) -> Task:
    """Follow-up work found while doing task `of`: a task of the same project and plan node that depends
    on `of` (it becomes ready once `of` is done). Recorded as `task.created` with `follow_up_of`."""
    node = of.plan_node if of.plan_node_id and of.plan_node.archived_at is None else None
    task = task_create(
        project=of.project,
        title=title,
        body=body,
        priority=of.priority if priority is None else priority,
        complexity=complexity,
        plan_node=node,
        actor=actor,
    )
    dependency_add(task=task, depends_on=of, actor=actor)
    record_event(kind="task.follow_up", subject=task, actor=actor, data={"follow_up_of": of.pk})
    return task


def _next_manual_order(project: Project) -> int:
    last = (
        Task.objects.filter(project=project)
        .order_by("-plan_order")
        .values_list("plan_order", flat=True)
        .first()
    )
    return (last or 0) + 1


def task_update(*, task: Task, actor=None, **changes: Any) -> Task:
    return _task_update(task=task, actor=actor, **_redact_texts(task.project, changes))


@transaction.atomic
def _task_update(*, task: Task, actor=None, **changes: Any) -> Task:
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        hint = " (change the status with a transition)" if "status" in unknown else ""
        raise ApplicationError(
            f"Cannot edit {', '.join(sorted(unknown))} here{hint}; editable: {', '.join(EDITABLE_FIELDS)}."
        )
    locked = Task.objects.select_for_update().get(pk=task.pk)
    cleaners = {
        "title": _clean_title,
        "body": _clean_body,
        "priority": lambda v: _clean_int("priority", v, 0, 5),
        "complexity": lambda v: _clean_int("complexity", v, 1, 10),
        "plan_node": lambda v: _clean_node(locked.project, v),
    }
    before: dict[str, Any] = {}
    for name, value in changes.items():
        value = cleaners[name](value)
        attname = "plan_node_id" if name == "plan_node" else name
        old = getattr(locked, attname)
        new = value.pk if name == "plan_node" and value is not None else value
        if old != new:
            before[name] = old
            setattr(locked, name, value)
    if not before:
        return locked
    locked.save(update_fields=[*before, "updated_at"])
    record_event(
        kind="task.updated",
        subject=locked,
        actor=actor,
        data={
            "changes": {
                k: {"from": before[k], "to": getattr(locked, "plan_node_id" if k == "plan_node" else k)}
                for k in before
                if k != "body"
            }
            | ({"body": "changed"} if "body" in before else {})
        },
    )
    _notify(locked.project_id, "task updated")
    return locked


@transaction.atomic
def task_delete(*, task: Task, actor=None) -> None:
    locked = Task.objects.select_for_update().filter(pk=task.pk).first()
    if locked is None:
        raise NotFound(f"Task {task.pk} does not exist.")
    if locked.status == Task.Status.IN_PROGRESS:
        raise ApplicationError(
            f"Task #{locked.pk} is in progress; stop its run or cancel it before deleting it."
        )
    project_id = locked.project_id
    record_event(
        kind="task.deleted", subject=locked, actor=actor, data={"title": locked.title, "id": locked.pk}
    )
    mark_dependents_stale([locked.pk])
    locked.delete()
    _notify(project_id, "task deleted")


def task_transition(*, task: Task, to: str, actor=None, reason: str = "") -> Task:
    if to not in Task.Status.values:
        raise ApplicationError(f"Unknown task status '{to}'; choose from {', '.join(Task.Status.values)}.")
    with transaction.atomic():
        if to == Task.Status.READY:
            blockers = _unfinished_dependencies(task)
            if blockers:
                names = ", ".join(f"'{t}' (#{pk}, {s})" for pk, t, s in blockers[:5])
                raise ApplicationError(
                    f"Task #{task.pk} cannot be ready: it waits for {len(blockers)} unfinished "
                    f"dependenc{'y' if len(blockers) == 1 else 'ies'}: {names}.",
                    extra={"blocking": [pk for pk, _, _ in blockers]},
                )
        now = timezone.now()
        fields: dict[str, Any] = {}
        if to == Task.Status.IN_PROGRESS and task.started_at is None:
            fields["started_at"] = now
        if to == Task.Status.DONE:
            fields["completed_at"] = now
        elif task.completed_at is not None:
            fields["completed_at"] = None
        task = transition(task, to, actor=actor, reason=reason, fields=fields)
        _notify(task.project_id, f"task {to}")
    return task


def _unfinished_dependencies(task: Task) -> list[tuple[int, str, str]]:
    return list(
        Task.objects.filter(dependent_links__task=task)
        .exclude(status__in=Task.SATISFIED)
        .order_by("plan_order", "pk")
        .values_list("pk", "title", "status")
    )


def _path(edges: dict[int, list[int]], start: int, goal: int) -> list[int] | None:
    """Breadth-first path start → … → goal following "depends on" edges (shortest, so the named
    cycle is too)."""
    previous: dict[int, int | None] = {start: None}
    queue = deque([start])
    while queue:
        current = queue.popleft()
        if current == goal:
            path = []
            node: int | None = current
            while node is not None:
                path.append(node)
                node = previous[node]
            return path[::-1]
        for nxt in edges.get(current, ()):
            if nxt not in previous:
                previous[nxt] = current
                queue.append(nxt)
    return None


def dependency_add(
    *, task: Task, depends_on: Task, actor=None, source: str = TaskDependency.Source.MANUAL
) -> TaskDependency:
    """`task` depends on `depends_on`: same project, not itself, no cycle — checked under the project's lock.

    The project row is locked first (SQLite: the IMMEDIATE transaction holds the write lock from BEGIN),
    so two concurrent adds that would close a cycle together are serialized and the second sees the first.
    Adding an existing dependency returns it unchanged.
    """
    if task.pk == depends_on.pk:
        raise ApplicationError(f"Task '{task.title}' (#{task.pk}) cannot depend on itself.")
    if task.project_id != depends_on.project_id:
        raise ApplicationError(
            f"Task #{depends_on.pk} belongs to another project; dependencies stay within one project.",
        )
    with transaction.atomic():
        Project.objects.select_for_update().get(pk=task.project_id)
        existing = TaskDependency.objects.filter(task_id=task.pk, depends_on_id=depends_on.pk).first()
        if existing is not None:
            return existing
        found = Task.objects.filter(pk__in=(task.pk, depends_on.pk)).count()
        if found != 2:
            raise NotFound("One of the tasks no longer exists.")
        edges: dict[int, list[int]] = {}
        for t, d in TaskDependency.objects.filter(task__project_id=task.project_id).values_list(
            "task_id", "depends_on_id"
        ):
            edges.setdefault(t, []).append(d)
        path = _path(edges, depends_on.pk, task.pk)
        if path is not None:
            raise cycle_error([task.pk, *path], prefix="This dependency would create a cycle")
        try:
            with transaction.atomic():
                dependency = TaskDependency.objects.create(
                    task_id=task.pk, depends_on_id=depends_on.pk, source=source
                )
        except IntegrityError as exc:
            raise ApplicationError("This dependency already exists.") from exc
        mark_stale([task.pk])
        record_event(
            kind="task.dependency_added",
            subject=task,
            actor=actor,
            data={"depends_on": depends_on.pk, "source": source},
        )
        _demote_if_blocked(task, depends_on)
        _notify(task.project_id, "dependency added")
    return dependency


def _demote_if_blocked(task: Task, depends_on: Task) -> None:
    """A ready task that gains an unfinished dependency is no longer ready."""
    if depends_on.status in Task.SATISFIED:
        return
    current = Task.objects.filter(pk=task.pk).values_list("status", flat=True).first()
    if current == Task.Status.READY:
        transition(task, Task.Status.TODO, reason=f"now depends on unfinished task #{depends_on.pk}")


@transaction.atomic
def dependency_remove(
    *,
    dependency: TaskDependency | None = None,
    task: Task | None = None,
    depends_on: Task | None = None,
    actor=None,
) -> None:
    if dependency is None:
        if task is None or depends_on is None:
            raise ApplicationError("Name the dependency to remove (its id, or both tasks).")
        dependency = TaskDependency.objects.filter(task=task, depends_on=depends_on).first()
        if dependency is None:
            raise NotFound(f"Task #{task.pk} does not depend on task #{depends_on.pk}.")
    task_id, depends_on_id = dependency.task_id, dependency.depends_on_id
    project_id = Task.objects.filter(pk=task_id).values_list("project_id", flat=True).first()
    deleted, _ = TaskDependency.objects.filter(pk=dependency.pk).delete()
    if not deleted:
        raise NotFound(f"Dependency {dependency.pk} does not exist.")
    mark_stale([task_id])
    record_event(
        kind="task.dependency_removed",
        subject=Task(pk=task_id, project_id=project_id),
        project=project_id,
        actor=actor,
        data={"depends_on": depends_on_id},
    )
    _notify(project_id, "dependency removed")


def generate_for_node(*, node: PlanNode, actor=None):
    if node.archived_at is not None:
        raise ApplicationError(
            f"Plan node '{node.title}' was removed from the spec (archived); nothing to generate."
        )
    # (node.blueprint is the version that last wrote the node; tasks belong to the current tree)
    blueprint = Blueprint.objects.filter(project_id=node.project_id, status=Blueprint.Status.ACTIVE).first()
    return generate_tasks(blueprint=blueprint or node.blueprint, nodes=[node], actor=actor)


def generate_for_blueprint(*, blueprint: Blueprint, actor=None):
    return generate_tasks(blueprint=blueprint, actor=actor)


# What refresh_readiness reports per project (by new state) -> the names these services report.
READINESS_COUNTS = {
    "done": "milestones_done",
    "reopened": "milestones_reopened",
    "ready": "ready",
    "todo": "unready",
}


def refresh_ready(project: Project | int) -> dict[str, int]:
    """Re-derive the readiness of every task of one project (`autopilot task refresh`): the tick only
    re-derives stale tasks, this also repairs data changed behind the services' back."""
    project_id = getattr(project, "pk", project)
    return _refresh_everything([project_id]).get(project_id, dict.fromkeys(READINESS_COUNTS.values(), 0))


def refresh_ready_everywhere() -> dict[int, dict[str, int]]:
    """The hourly safety net behind the incremental rule: re-derive every task of every project.
    Returns the counts of the projects where something changed."""
    return _refresh_everything(list(Project.objects.values_list("pk", flat=True)))


def _refresh_everything(project_ids: list[int]) -> dict[int, dict[str, int]]:
    """A full readiness pass; each project where something changed gets an event and a tick."""
    changed: dict[int, dict[str, int]] = {}
    with transaction.atomic():
        result = refresh_readiness(project_ids, full=True)
        for project_id, changes in result["by_project"].items():
            counts = {name: len(changes.get(label, ())) for label, name in READINESS_COUNTS.items()}
            record_event(kind="tasks.readiness", project=project_id, data=counts)
            _notify(project_id, "readiness refreshed")
            changed[project_id] = counts
    return changed
