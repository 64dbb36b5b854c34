"""Reads for tasks and the dependency graph: ready / next, the board, the dependency view."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Count, Exists, OuterRef, QuerySet

from autopilot.errors import NotFound
from autopilot.models import Project
from autopilot.permissions import visible_projects
from blueprints.filtersets import TaskFilterSet, within_node
from blueprints.layout import Layout
from blueprints.models import Blueprint, PlanLayout, PlanNode, Task, TaskDependency


def unfinished_dependency_exists() -> Exists:
    """`Exists(...)` for "this task (OuterRef pk) has a dependency that is not done"."""
    return Exists(
        TaskDependency.objects.filter(task_id=OuterRef("pk")).exclude(depends_on__status__in=Task.SATISFIED)
    )


def visible_tasks(user) -> QuerySet[Task]:
    return Task.objects.filter(project__in=visible_projects(user))


def ready_tasks(project: Project | int, *, phase: PlanNode | None = None) -> QuerySet[Task]:
    """Work tasks in todo/ready whose dependencies are ALL done, not removed from the spec, best first."""
    project_id = getattr(project, "pk", project)
    qs = (
        Task.objects.filter(
            project_id=project_id, kind=Task.Kind.WORK, status__in=Task.UNSTARTED, removed_from_spec=False
        )
        .exclude(unfinished_dependency_exists())
        .order_by(*Task.RANKING)
    )
    if phase is not None:
        qs = within_node(qs, phase)
    return qs


def next_task(project: Project | int, *, phase: PlanNode | None = None) -> tuple[Task | None, str]:
    """The single best ready task and why (priority, then learned priority, then plan order)."""
    ready = list(ready_tasks(project, phase=phase).select_related("plan_node")[:2])
    scope = f" in phase '{phase.title}'" if phase is not None else ""
    if not ready:
        return None, _why_nothing_ready(project, phase=phase, scope=scope)
    best = ready[0]
    total = ready_tasks(project, phase=phase).count()
    deps = TaskDependency.objects.filter(task=best).count()
    if len(ready) == 1:
        why = f"it is the only ready task{scope}"
    else:
        other = ready[1]
        if best.priority != other.priority:
            why = f"it has the highest priority (P{best.priority}) among the {total} ready tasks{scope}"
        elif best.learned_priority != other.learned_priority:
            why = (
                f"it ties at priority P{best.priority} and has the highest learned priority "
                f"({best.learned_priority:.2f}) among the {total} ready tasks{scope}"
            )
        else:
            why = (
                f"it ties at priority P{best.priority} and learned priority {best.learned_priority:.2f}, "
                f"and comes first in plan order (position {best.plan_order}) "
                f"among the {total} ready tasks{scope}"
            )
    deps_text = (
        "it has no dependencies"
        if deps == 0
        else (f"its {deps} dependenc{'y is' if deps == 1 else 'ies are all'} done")
    )
    return best, f"Task #{best.pk} '{best.title}': {why}; {deps_text}."


def _why_nothing_ready(project, *, phase, scope: str) -> str:
    project_id = getattr(project, "pk", project)
    qs = Task.objects.filter(project_id=project_id, kind=Task.Kind.WORK)
    if phase is not None:
        qs = within_node(qs, phase)
    counts = dict(qs.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    if not counts:
        return (
            f"No task is ready{scope}: there are no tasks yet (create one or generate them from a blueprint)."
        )
    blocked = (
        qs.filter(status__in=Task.UNSTARTED, removed_from_spec=False)
        .filter(unfinished_dependency_exists())
        .count()
    )
    parts = []
    if blocked:
        parts.append(f"{blocked} wait{'s' if blocked == 1 else ''} for unfinished dependencies")
    for status in (
        Task.Status.IN_PROGRESS,
        Task.Status.REVIEW,
        Task.Status.BLOCKED,
        Task.Status.DONE,
        Task.Status.CANCELLED,
    ):
        if counts.get(status):
            parts.append(f"{counts[status]} {Task.Status(status).label.lower()}")
    removed = qs.filter(status__in=Task.UNSTARTED, removed_from_spec=True).count()
    if removed:
        parts.append(f"{removed} removed from the spec")
    return f"No task is ready{scope}: " + (", ".join(parts) or "nothing is open") + "."


@dataclass
class BoardColumn:
    status: str
    label: str
    count: int
    tasks: list[Task]
    offset: int
    next_offset: int | None


@dataclass
class Board:
    filterset: TaskFilterSet
    columns: list[BoardColumn] = field(default_factory=list)
    total: int = 0


def task_board(
    project: Project, data, *, per_column: int = 50, column: str | None = None, offset: int = 0
) -> Board:
    """The board: per-status columns with counts over the filtered tasks, each paginated.

    `column` + `offset` load one more page of one column (htmx "more").
    """
    base = Task.objects.filter(project=project)
    filterset = TaskFilterSet(data=data if data is not None else {}, queryset=base)
    qs = filterset.qs if filterset.is_valid() else base.none()
    counts = dict(qs.order_by().values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    selected = set(filterset.form.cleaned_data.get("status") or []) if filterset.is_valid() else set()
    board = Board(filterset=filterset, total=sum(counts.values()))
    for status, label in Task.Status.choices:
        if selected and status not in selected:
            continue
        if column is not None and status != column:
            continue
        start = offset if column == status else 0
        page = (
            list(
                qs.filter(status=status)
                .select_related("plan_node")
                .order_by(*Task.RANKING)[start : start + per_column]
            )
            if counts.get(status)
            else []
        )
        more = start + per_column if counts.get(status, 0) > start + per_column else None
        board.columns.append(BoardColumn(status, label, counts.get(status, 0), page, start, more))
    return board


@dataclass
class DependencyView:
    task: Task
    upstream: list[TaskDependency]
    downstream: list[TaskDependency]

    @property
    def blocking(self) -> list[TaskDependency]:
        return [d for d in self.upstream if d.depends_on.status not in Task.SATISFIED]

    @property
    def is_ready(self) -> bool:
        return not self.blocking


def dependency_view(task: Task) -> DependencyView:
    upstream = list(
        TaskDependency.objects.filter(task=task)
        .select_related("depends_on")
        .order_by("depends_on__plan_order", "depends_on_id")
    )
    downstream = list(
        TaskDependency.objects.filter(depends_on=task)
        .select_related("task")
        .order_by("task__plan_order", "task_id")
    )
    return DependencyView(task=task, upstream=upstream, downstream=downstream)


def task_get(project: Project, identifier) -> Task:
    """A task of a project by id (`12` or `#12`)."""
    text = str(identifier).strip().lstrip("#")
    task = Task.objects.filter(project=project, pk=int(text)).first() if text.isdigit() else None
    if task is None:
        raise NotFound(f"No task '{identifier}' in project '{project.name}'.")
    return task


def node_get(project: Project, identifier) -> PlanNode:
    """A node of the project's current plan tree by id, anchor, anchor tail or title (the first in document
    order when several match)."""
    text = str(identifier).strip().lstrip("#")
    qs = PlanNode.objects.filter(project=project, archived_at__isnull=True)
    node = None
    if text.isdigit():
        node = qs.filter(pk=int(text)).first()
    for lookup in ({"anchor": text}, {"anchor__endswith": "/" + text}, {"title__iexact": text}):
        if node is not None:
            break
        found = list(qs.filter(**lookup)[:100])
        if len(found) > 1:
            layout = layout_of(active_blueprint(project))
            position = layout.index() if layout is not None else {}
            found.sort(key=lambda n: (position.get(n.pk, len(position)), n.pk))
        node = found[0] if found else None
    if node is None:
        raise NotFound(
            f"No plan node '{identifier}' in project '{project.name}' (give its id, anchor or title)."
        )
    return placed(node)


# --- Plan trees: a version's nodes, placed by its layout -------------------------------------------


def layout_of(blueprint: Blueprint | int | None) -> Layout | None:
    """A version's plan tree (blueprints.layout), or None."""
    blueprint_id = getattr(blueprint, "pk", blueprint)
    if blueprint_id is None:
        return None
    data = PlanLayout.objects.filter(blueprint_id=blueprint_id).values_list("data", flat=True).first()
    return Layout.decode(data) if data is not None else None


def active_blueprint(project: Project | int) -> Blueprint | None:
    return Blueprint.objects.filter(
        project_id=getattr(project, "pk", project), status=Blueprint.Status.ACTIVE
    ).first()


def place(node: PlanNode, blueprint_id: int, layout: Layout, i: int) -> PlanNode:
    """Give a node row what version `blueprint_id` says about it (layout index i): parent, position in
    the text and in document order, level, depth, kind, change (and title, anchor, hashes: an older
    version's own)."""
    node.blueprint_id = blueprint_id
    node.parent_id = layout.parent_id(i)
    node.order, node.start, node.end = i, layout.starts[i], layout.ends[i]
    node.level, node.depth, node.kind = layout.levels[i], layout.depths[i], layout.kind(i)
    node.title, node.anchor = layout.titles[i], layout.anchors[i]
    node.content_hash, node.body_hash, node.checked = layout.hashes[i], layout.bodies[i], layout.checked(i)
    if node.archived_at is None:
        node.change = layout.change(i)
    return node


def version_nodes(blueprint: Blueprint, *, archived: bool = False, queryset=None) -> list[PlanNode]:
    """The nodes of one version, in document order, as that version has them (its layout): for the active
    version the current tree, for an older one its tree then. Nodes archived since are left out unless
    `archived`."""
    layout = layout_of(blueprint)
    if layout is None:
        return []
    qs = PlanNode.objects.all() if queryset is None else queryset
    if not archived:
        qs = qs.filter(archived_at__isnull=True)
    rows = {}
    for i in range(0, len(layout.ids), 10_000):  # (a statement's parameters are limited)
        rows.update(qs.in_bulk(layout.ids[i : i + 10_000]))
    return [
        place(rows[node_id], blueprint.pk, layout, i)
        for i, node_id in enumerate(layout.ids)
        if node_id in rows
    ]


def current_nodes(project: Project | int, *, queryset=None) -> list[PlanNode]:
    """The project's current plan tree (its active version's nodes), in document order."""
    blueprint = active_blueprint(project)
    return version_nodes(blueprint, queryset=queryset) if blueprint is not None else []


def placed(node: PlanNode) -> PlanNode:
    """A node as the active version has it (unchanged if it is not in the active version: archived)."""
    blueprint = active_blueprint(node.project_id)
    layout = layout_of(blueprint)
    if layout is not None and node.archived_at is None:
        try:
            i = layout.ids.index(node.pk)
        except ValueError:
            return node
        place(node, blueprint.pk, layout, i)
    return node


def tree_index(project: Project | int) -> tuple[Blueprint | None, Layout | None, list[tuple[int, str, int]]]:
    """The current tree for listings: the active version, its layout and, in document order, (layout index,
    status, priority) of each node not archived (one query for those two columns)."""
    blueprint = active_blueprint(project)
    layout = layout_of(blueprint)
    if layout is None:
        return blueprint, None, []
    stable = {
        node_id: (status, priority)
        for node_id, status, priority in PlanNode.objects.filter(
            project_id=getattr(project, "pk", project), archived_at__isnull=True
        ).values_list("id", "status", "priority")
    }
    return (
        blueprint,
        layout,
        [(i, *stable[node_id]) for i, node_id in enumerate(layout.ids) if node_id in stable],
    )


def section_text(node: PlanNode | None, *, limit: int = 20_000) -> str:
    """A plan node's section of the active blueprint (its heading, text and subsections), at most `limit`
    characters; "" when the node is not in the active version (archived) or there is none."""
    if node is None or node.archived_at is not None:
        return ""
    blueprint = active_blueprint(node.project_id)
    if blueprint is None:
        return ""
    node = placed(node)
    if node.blueprint_id != blueprint.pk:
        return ""
    return blueprint.source_text[node.start : min(node.end, node.start + limit)]
