"""Core web pages: health, dashboard, project pages. Thin: they read selectors and call services."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404, JsonResponse
from django.shortcuts import render

from autopilot.health import run_checks
from autopilot.permissions import header_controls
from autopilot.selectors import project_list

DEMO_BACKEND = "scripted"


async def healthz(request):
    report = await run_checks()
    return JsonResponse(report, status=200 if report["status"] == "ok" else 503)


def _count(model_path: str, status_set: str) -> Coalesce:
    """Rows of `model_path` per project whose status is in the model's named set `status_set`."""
    from django.apps import apps

    model = apps.get_model(model_path)
    counts = (
        model.objects.filter(project=OuterRef("pk"), status__in=getattr(model, status_set))
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
            open_tasks=_count("blueprints.Task", "OPEN"),
            active_runs=_count("runs.ExecutionRun", "ACTIVE"),
        )
    )
    for project in rows:
        project.code_agent, project.code_model = project.agent_for("code")
        project.is_demo = project.code_agent == DEMO_BACKEND
    return rows


@login_required
def dashboard(request):
    projects = _with_overview(project_list(user=request.user))
    return render(request, "autopilot/dashboard.html", {"projects": projects})


@login_required
def project_detail(request, pk: int):
    found = _with_overview(project_list(user=request.user).filter(pk=pk))
    if not found:
        raise Http404("No such project.")
    return render(request, "autopilot/project_detail.html",
                  {"project": found[0], **header_controls(request.user, found[0])})



