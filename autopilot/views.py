"""Core web pages: health, the dashboard (session cards), the projects page, project pages, error pages.
Thin: they read selectors (autopilot.selectors, autopilot.manager.dashboard) and call services."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404, HttpResponseNotAllowed, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from autopilot.errors import ApplicationError
from autopilot.health import run_checks
from autopilot.manager import dashboard as boards
from autopilot.models import Role
from autopilot.permissions import has_role, has_site_trust, header_controls, require_register
from autopilot.repo_info import current_branch
from autopilot.selectors import project_list
from autopilot.services import project_create, project_delete
from autopilot.web import project_or_404
from blueprints.models import Task
from runs.models import ExecutionRun
from runs.snapshot import FRESH_FOR as SNAPSHOT_FRESH_FOR
from runs.snapshot import snapshot_latest, snapshot_refresh

PROJECT_FORM_FIELDS = ("name", "repo_path", "base_branch", "test_command", "setup_script")


async def healthz(request):
    report = await run_checks()
    return JsonResponse(report, status=200 if report["status"] == "ok" else 503)


def _count(model, statuses) -> Coalesce:
    counts = (
        model.objects.filter(project=OuterRef("pk"), status__in=statuses)
        .order_by()
        .values("project")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counts, output_field=IntegerField()), 0)


def _with_overview(projects: QuerySet) -> list:
    """One query: each project with its open tasks and active runs; the code agent from its matrix."""
    rows = list(
        projects.annotate(
            open_tasks=_count(Task, Task.OPEN),
            active_runs=_count(ExecutionRun, ExecutionRun.ACTIVE),
        )
    )
    for project in rows:
        project.code_agent, project.code_model = project.agent_for("code")
        project.is_demo = boards.is_demo_project(project)
    return rows


def _filters(request) -> dict:
    try:
        project_id = int(request.GET.get("project") or 0) or None
    except ValueError:
        project_id = None
    status = request.GET.get("status") or ""
    return {"project_id": project_id, "status": status if status in boards.STATUS_FILTERS else ""}


@login_required
def dashboard(request):
    """Live session cards across every project the user sees (htmx `?part=board` re-renders the board)."""
    filters = _filters(request)
    projects, board = boards.dashboard_board(user=request.user, **filters)
    context = {
        "projects": projects,
        "board": board,
        "filter_project": filters["project_id"] or "",
        "filter_status": filters["status"],
        "status_filters": boards.STATUS_FILTER_LABELS,
    }
    if request.htmx and request.GET.get("part") == "board":
        return render(request, "autopilot/dashboard.html#board", context)
    context["last_event"] = boards.last_event_id()
    return render(request, "autopilot/dashboard.html", context)


@login_required
def needs_input(request):
    """The navigation badge: runs waiting for approval in the projects the user sees (polled, live)."""
    return render(request, "autopilot/_needs_input.html", {"waiting": boards.needs_input(user=request.user)})


@login_required
def projects_page(request):
    """GET: the projects table and (for users who may register a repository) the add form. POST: add."""
    if request.method not in ("GET", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    form = {key: "" for key in PROJECT_FORM_FIELDS}
    error, status = "", 200
    if request.method == "POST":
        try:
            require_register(request.user)  # a 403 page naming the right needed
        except ApplicationError as exc:
            raise DjangoPermissionDenied(exc.message) from exc
        form = {key: (request.POST.get(key) or "").strip() for key in PROJECT_FORM_FIELDS}
        form["setup_script"] = (request.POST.get("setup_script") or "").strip("\n")
        detected = current_branch(actor=request.user, repo_path=form["repo_path"])
        branch = form["base_branch"] or detected or "main"
        try:
            project = project_create(
                name=form["name"],
                repo_path=form["repo_path"],
                base_branch=branch,
                test_command=form["test_command"],
                setup_script=form["setup_script"],
                actor=request.user,
            )
        except ApplicationError as exc:
            error, status = exc.message, exc.status_code if exc.status_code == 403 else 400
        else:
            messages.success(request, f"Project '{project.name}' added (base branch {project.base_branch}).")
            return redirect("project-detail", pk=project.pk)
    context = {
        "projects": boards.projects_table(user=request.user),
        "can_register": has_site_trust(request.user),
        "form": form,
        "error": error,
    }
    return render(request, "autopilot/projects.html", context, status=status)


@login_required
def branch_hint(request):
    """htmx: the branch checked out at the typed path (only inside the allowed repository roots)."""
    branch = None
    if has_site_trust(request.user):  # only those who may register a repository learn about one
        branch = current_branch(actor=request.user, repo_path=request.GET.get("repo_path", "").strip())
    return render(request, "autopilot/projects.html#branch-hint", {"detected_branch": branch or ""})


@login_required
@require_POST
def project_remove(request, pk: int):
    """Unregister a project (owner): its rows go, the repository's files stay where they are."""
    project = project_or_404(request, pk, Role.OWNER)
    name, path = project.name, project.repo_path
    try:
        project_delete(project=project, actor=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Project '{name}' removed. Its repository at {path} was not touched.")
    return redirect("projects")


@login_required
def project_detail(request, pk: int):
    """The Overview tab: the project's newest snapshot (runs.snapshot), computed anew when there is none
    or the newest is older than runs.snapshot.FRESH_FOR (5 minutes)."""
    found = _with_overview(project_list(user=request.user).filter(pk=pk))
    if not found:
        raise Http404("No such project.")
    project = found[0]
    return render(
        request,
        "autopilot/project_overview.html",
        {
            "project": project,
            "snap": snapshot_latest(project, max_age=SNAPSHOT_FRESH_FOR),
            "can_refresh": has_role(request.user, project, Role.OPERATOR),
            **header_controls(request.user, project),
        },
    )


@login_required
@require_POST
def project_snapshot_refresh(request, pk: int):
    """Compute a new snapshot (operators), optionally with the manager model's narrative."""
    project = project_or_404(request, pk, Role.OPERATOR)
    stored = snapshot_refresh(project, actor=request.user, narrative=request.POST.get("narrative") == "1")
    if stored.narrative_error:
        messages.warning(request, f"Snapshot refreshed without a narrative: {stored.narrative_error}")
    return redirect("project-detail", pk=project.pk)
