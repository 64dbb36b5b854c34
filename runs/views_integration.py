"""Integration pages: a project's Integration tab (the merge queue, live), the "open diff" page of the
integration branch, the retry / skip / resolve buttons, the integration settings form, and a task's
integration panel with its review buttons.

Thin: reads come from runs.integration_selectors, writes from runs.integration and
autopilot.services.project_update (who may change which setting: FIELD_ROLES). Viewers read;
operators act; owners change the settings (trusted owners the test command and the remote).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from autopilot.errors import ApplicationError
from autopilot.input_limits import MAX_MESSAGE_CHARS
from autopilot.manager.dashboard import last_event_id
from autopilot.models import ConflictPolicy, MergeStrategy, Role
from autopilot.permissions import can_change, has_role, header_controls
from autopilot.services import INTEGRATION_FIELDS, project_update
from autopilot.web import project_or_404
from blueprints.models import Task
from runs import integration, integration_selectors
from runs.models import TaskReview

ACTIONS = ("retry", "skip", "resolve")
REVIEW_CHOICES = {"": None, "required": True, "not_required": False}


def _context(request, project, **extra) -> dict:
    return {
        "project": project,
        **header_controls(request.user, project),
        "can_settings": can_change(request.user, project, ["integration_branch"]),
        "can_trusted": can_change(request.user, project, ["integration_test_command"]),
        **extra,
    }


def _settings_form(project) -> dict:
    review = {None: "", True: "required", False: "not_required"}[project.review_required]
    return {
        "integration_branch": project.integration_branch,
        "merge_strategy": project.merge_strategy,
        "review_required": review,
        "integration_test_command": project.integration_test_command,
        "conflict_policy": project.conflict_policy,
        "integration_remote": project.integration_remote,
        "push_task_branches": project.push_task_branches,
    }


def _page(request, project, *, form=None, error: str = "", status: int = 200):
    context = _context(
        request,
        project,
        status=integration_selectors.queue_status(project),
        form=form or _settings_form(project),
        settings_error=error,
        strategies=MergeStrategy.choices,
        policies=ConflictPolicy.choices,
        last_event=last_event_id(),
    )
    template = "runs/integration.html"
    if request.htmx and request.GET.get("part") == "live":
        template = "runs/integration.html#live"
    return render(request, template, context, status=status)


@login_required
def integration_page(request, pk: int):
    """The Integration tab. `?part=live` (htmx): the queue panel alone, re-fetched on every event."""
    return _page(request, project_or_404(request, pk))


@login_required
@require_POST
def integration_settings(request, pk: int):
    """The settings form: only the values that changed go to the service (an owner without the right
    to register repositories can still change what does not execute)."""
    project = project_or_404(request, pk, Role.OWNER)
    post = request.POST
    form = _settings_form(project)  # a field the form did not send keeps its value
    form.update({key: post[key].strip() for key in INTEGRATION_FIELDS if key in post})
    if "push_task_branches" in post or "push_task_branches_shown" in post:  # an unticked box sends nothing
        form["push_task_branches"] = post.get("push_task_branches") in ("1", "on", "true")
    if form["review_required"] not in REVIEW_CHOICES:
        return _page(
            request, project, form=form, error="Review: choose default, required or not required.", status=400
        )
    values = {**form, "review_required": REVIEW_CHOICES[form["review_required"]]}
    changes = {key: value for key, value in values.items() if getattr(project, key) != value}
    if changes:
        try:
            project_update(project=project, actor=request.user, **changes)
        except ApplicationError as exc:
            return _page(request, project, form=form, error=exc.message, status=exc.status_code)
        messages.success(request, f"Integration settings saved ({', '.join(sorted(changes))}).")
    return redirect("integration-page", pk=project.pk)


@login_required
@require_POST
def integration_action(request, pk: int, integration_id: int, action: str):
    if action not in ACTIONS:
        raise Http404("Unknown action.")
    project = project_or_404(request, pk, Role.OPERATOR)
    try:
        found = integration_selectors.integration_get(project, integration_id)
    except ApplicationError as exc:
        raise Http404(exc.message) from exc
    try:
        if action == "retry":
            integration.retry(found, actor=request.user)
        elif action == "skip":
            integration.skip(found, actor=request.user, reason=request.POST.get("reason", "").strip())
        else:
            integration.resolve(found, actor=request.user)
    except ApplicationError as exc:
        messages.error(request, f"Integration #{found.pk}: {exc.message}")
    else:
        messages.success(request, f"Integration #{found.pk} of task #{found.task_id}: {action} done.")
    if request.htmx:
        return HttpResponse(status=204, headers={"HX-Trigger": "autopilot:refresh"})
    return redirect(
        request.POST.get("next") if _safe_next(request) else reverse("integration-page", args=[pk])
    )


def _safe_next(request) -> bool:
    target = request.POST.get("next") or ""
    return target.startswith("/projects/") and "//" not in target


@login_required
def integration_diff(request, pk: int):
    """`git diff base...integration`, escaped by the template (and redacted, capped)."""
    project = project_or_404(request, pk)
    text, truncated, problem = integration_selectors.integration_diff(project)
    return render(
        request,
        "runs/integration_diff.html",
        _context(request, project, diff=text, truncated=truncated, problem=problem),
    )


# --- A task's integration panel (on the task page) ------------------------------------------------


def task_panel_context(request, project, task: Task, *, review_error: str = "", comment: str = "") -> dict:
    return {
        "integration_info": integration_selectors.task_integration(task),
        "pr_body": integration_selectors.pr_body(task),
        "can_review": has_role(request.user, project, Role.OPERATOR),
        "review_error": review_error,
        "review_comment": comment,
        "decisions": TaskReview.Decision,
    }


def _task(project, task_id: int) -> Task:
    task = Task.objects.filter(project=project, pk=task_id).select_related("project", "plan_node").first()
    if task is None:
        raise Http404("No such task.")
    return task


def _panel(request, project, task, *, status: int = 200, **extra):
    context = {"project": project, "task": task, **task_panel_context(request, project, task, **extra)}
    return render(request, "runs/_task_integration.html", context, status=status)


@login_required
def task_integration(request, pk: int, task_id: int):
    """The task page's integration panel alone (htmx re-fetches it on every event of the project)."""
    project = project_or_404(request, pk)
    return _panel(request, project, _task(project, task_id))


@login_required
@require_POST
def task_review(request, pk: int, task_id: int):
    """Approve / request changes (with a comment) / reject (optionally cancel) the task's work."""
    project = project_or_404(request, pk, Role.OPERATOR)
    task = _task(project, task_id)
    decision = request.POST.get("decision", "")
    comment = (request.POST.get("comment") or "").strip()
    cancel = request.POST.get("cancel") in ("1", "on", "true")
    error = ""
    if decision not in TaskReview.Decision.values:
        error = f"Unknown decision '{decision}'; choose approve, request changes or reject."
    elif len(comment) > MAX_MESSAGE_CHARS:
        error = f"The comment is longer than {MAX_MESSAGE_CHARS:,} characters."
    elif decision == TaskReview.Decision.CHANGES_REQUESTED and not comment:
        error = "Requesting changes needs a comment saying what to change."
    elif cancel and decision != TaskReview.Decision.REJECTED:
        error = "Only a rejection can cancel the task."
    if not error:
        try:
            integration.review(task, actor=request.user, decision=decision, comment=comment, cancel=cancel)
        except ApplicationError as exc:
            error = exc.message
    if request.htmx:
        task.refresh_from_db()
        return _panel(
            request,
            project,
            task,
            status=400 if error else 200,
            review_error=error,
            comment=comment if error else "",
        )
    if error:
        messages.error(request, error)
    else:
        messages.success(request, f"Task #{task.pk}: {TaskReview.Decision(decision).label.lower()}.")
    return redirect("task-detail", pk=project.pk, task_id=task.pk)
