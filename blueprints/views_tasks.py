"""Web pages for tasks (htmx): the board, a task's detail with its dependency view, create/edit forms.

Thin: permissions via autopilot.permissions, reads via selectors, writes via services. The board uses
the same TaskFilterSet as the API.
"""

from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from autopilot.errors import ApplicationError
from autopilot.models import Project, Role
from autopilot.permissions import has_role, visible_projects
from autopilot.state import allowed_targets
from autopilot.web import project_or_404
from blueprints import selectors, services
from blueprints.layout import CHECKLIST
from blueprints.models import Blueprint, PlanNode, Task, TaskDependency
from blueprints.selectors import tree_index
from runs import selectors as run_selectors
from runs.backends import backend_label
from runs.views_integration import task_panel_context

PER_COLUMN = 50
TASK_RUNS = 20  # the task page lists its latest runs


def _task(project: Project, task_id: int) -> Task:
    task = Task.objects.filter(project=project, pk=task_id).select_related("plan_node").first()
    if task is None:
        raise Http404("No such task.")
    return task


class TaskForm(forms.Form):
    title = forms.CharField(max_length=500)
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 8}), required=False)
    priority = forms.IntegerField(min_value=0, max_value=5, initial=2, help_text="0 (lowest) – 5 (highest)")
    complexity = forms.IntegerField(min_value=1, max_value=10, initial=3, help_text="1 – 10")
    plan_node = forms.IntegerField(required=False, widget=forms.Select, label="Plan node")

    def __init__(self, *args, project: Project, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["plan_node"].widget.choices = [("", "— none —")] + [
            (n.pk, "· " * (n.depth - 1) + n.title[:120]) for n in _node_choices(project, limit=2000)
        ]


def _node_choices(project: Project, *, limit: int = 500, max_level: int | None = None):
    """Headings of the current tree in document order (id, title, level, depth), for the node pickers."""
    _, layout, present = tree_index(project)
    choices = []
    for i, _status, _priority in present:
        if layout.flags[i] & CHECKLIST or (max_level is not None and layout.depths[i] > max_level):
            continue
        choices.append(
            PlanNode(pk=layout.ids[i], title=layout.titles[i], level=layout.levels[i], depth=layout.depths[i])
        )
        if len(choices) >= limit:
            break
    return choices


@login_required
def task_board(request, pk: int):
    project = project_or_404(request, pk)
    column = request.GET.get("column")
    if column is not None and column not in Task.Status.values:
        column = None
    try:
        offset = max(0, int(request.GET.get("offset", 0)))
    except ValueError:
        offset = 0
    data = request.GET.copy()
    for key in ("column", "offset"):
        data.pop(key, None)
    board = selectors.task_board(project, data, per_column=PER_COLUMN, column=column, offset=offset)
    query = data.urlencode()
    context = {
        "project": project,
        "board": board,
        "query": query,
        "nodes": [(n.pk, "· " * (n.depth - 1) + n.title) for n in _node_choices(project, max_level=3)],
        "selected_node": data.get("plan_node", ""),
        "selected_statuses": data.getlist("status"),
        "statuses": Task.Status.choices,
        "can_write": has_role(request.user, project, Role.OPERATOR),
    }
    if request.htmx and column is not None:
        context["col"] = board.columns[0] if board.columns else None
        return render(request, "blueprints/task_board.html#column-page", context)
    if request.htmx and request.htmx.target == "board":
        return render(request, "blueprints/task_board.html#board", context)
    return render(request, "blueprints/task_board.html", context)


def _detail_context(request, project: Project, task: Task, **extra) -> dict:
    view = selectors.dependency_view(task)
    return {
        "project": project,
        "task": task,
        "deps": view,
        "form": extra.pop("form", None)
        or TaskForm(
            project=project,
            initial={
                "title": task.title,
                "body": task.body,
                "priority": task.priority,
                "complexity": task.complexity,
                "plan_node": task.plan_node_id,
            },
        ),
        "targets": [
            (value, label)
            for value, label in Task.Status.choices
            if value in allowed_targets(Task, task.status)
        ],
        "can_write": has_role(request.user, project, Role.OPERATOR),
        **extra,
    }


@login_required
def task_detail(request, pk: int, task_id: int):
    project = project_or_404(request, pk)
    task = _task(project, task_id)
    context = _detail_context(request, project, task)
    runs = list(run_selectors.run_list(project=project, task_id=task.pk)[:TASK_RUNS])
    for run in runs:
        run.label = backend_label(run.agent_backend)
    context.update(task_runs=runs, launch_for_task=task, launch_text="Run this task")
    context.update(task_panel_context(request, project, task))
    return render(request, "blueprints/task_detail.html", context)


@login_required
def task_new(request, pk: int):
    project = project_or_404(request, pk, Role.OPERATOR)
    form = TaskForm(
        request.POST or None, project=project, initial={"plan_node": request.GET.get("plan_node")}
    )
    error = None
    if request.method == "POST" and form.is_valid():
        try:
            task = services.task_create(project=project, actor=request.user, **form.cleaned_data)
        except ApplicationError as exc:
            error = exc.message
        else:
            return redirect(reverse("task-detail", args=[project.pk, task.pk]))
    status = 400 if request.method == "POST" else 200
    return render(
        request,
        "blueprints/task_form.html",
        {"project": project, "form": form, "error": error},
        status=status,
    )


@login_required
@require_POST
def task_edit(request, pk: int, task_id: int):
    project = project_or_404(request, pk, Role.OPERATOR)
    task = _task(project, task_id)
    form = TaskForm(request.POST, project=project)
    if form.is_valid():
        try:
            services.task_update(task=task, actor=request.user, **form.cleaned_data)
        except ApplicationError as exc:
            return _detail_error(request, project, task, exc.message, form=form)
        return redirect(reverse("task-detail", args=[project.pk, task.pk]))
    return _detail_error(request, project, task, "Please correct the fields below.", form=form)


@login_required
@require_POST
def task_transition(request, pk: int, task_id: int):
    project = project_or_404(request, pk, Role.OPERATOR)
    task = _task(project, task_id)
    try:
        services.task_transition(
            task=task,
            to=request.POST.get("status", ""),
            actor=request.user,
            reason=request.POST.get("reason", ""),
        )
    except ApplicationError as exc:
        return _detail_error(request, project, task, exc.message)
    return redirect(reverse("task-detail", args=[project.pk, task.pk]))


@login_required
@require_POST
def task_delete(request, pk: int, task_id: int):
    project = project_or_404(request, pk, Role.OPERATOR)
    task = _task(project, task_id)
    try:
        services.task_delete(task=task, actor=request.user)
    except ApplicationError as exc:
        return _detail_error(request, project, task, exc.message)
    return redirect(reverse("task-board", args=[project.pk]))


def _detail_error(request, project, task, message: str, **extra) -> HttpResponse:
    context = _detail_context(request, project, task, error=message, **extra)
    return render(request, "blueprints/task_detail.html", context, status=400)


def _dependencies_response(request, project, task, *, error: str | None = None) -> HttpResponse:
    task = _task(project, task.pk)
    context = _detail_context(request, project, task, dep_error=error)
    template = "blueprints/task_detail.html#dependencies" if request.htmx else "blueprints/task_detail.html"
    return render(request, template, context, status=400 if error else 200)


@login_required
@require_POST
def task_dependency_add(request, pk: int, task_id: int):
    project = project_or_404(request, pk, Role.OPERATOR)
    task = _task(project, task_id)
    raw = request.POST.get("depends_on", "").strip().lstrip("#")
    try:
        if not raw.isdigit():
            raise ApplicationError("Give the id of the task it depends on (e.g. 42).")
        other = Task.objects.filter(pk=int(raw), project__in=visible_projects(request.user)).first()
        if other is None:
            raise ApplicationError(f"No task #{raw}.")
        services.dependency_add(task=task, depends_on=other, actor=request.user)
    except ApplicationError as exc:
        return _dependencies_response(request, project, task, error=exc.message)
    return _dependencies_response(request, project, task)


@login_required
@require_POST
def task_dependency_remove(request, pk: int, task_id: int, dep_id: int):
    project = project_or_404(request, pk, Role.OPERATOR)
    task = _task(project, task_id)
    dependency = TaskDependency.objects.filter(pk=dep_id, task__project=project).first()
    if dependency is None:
        raise Http404("No such dependency.")
    try:
        services.dependency_remove(dependency=dependency, actor=request.user)
    except ApplicationError as exc:
        return _dependencies_response(request, project, task, error=exc.message)
    return _dependencies_response(request, project, task)


@login_required
@require_POST
def task_generate(request, pk: int):
    from django.contrib import messages

    project = project_or_404(request, pk, Role.OPERATOR)
    blueprint = Blueprint.objects.filter(project=project, status=Blueprint.Status.ACTIVE).first()
    if blueprint is None:
        messages.error(request, "This project has no active blueprint yet: ingest one first.")
    else:
        try:
            result = services.generate_for_blueprint(blueprint=blueprint, actor=request.user)
        except ApplicationError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(
                request,
                f"{result.tasks_created} task(s) created, {result.dependencies_created} dependenc(ies) added "
                f"({result.tasks_total} generated tasks in total).",
            )
    return redirect(reverse("task-board", args=[project.pk]))
