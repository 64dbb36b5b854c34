"""Core web pages: health, dashboard, project pages. Thin: they read selectors and call services."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import render

from autopilot.health import run_checks
from autopilot.permissions import visible_projects


async def healthz(request):
    report = await run_checks()
    return JsonResponse(report, status=200 if report["status"] == "ok" else 503)


@login_required
def dashboard(request):
    projects = visible_projects(request.user).select_related("active_phase")
    return render(request, "autopilot/dashboard.html", {"projects": projects})


@login_required
def project_detail(request, pk: int):
    from django.http import Http404

    project = visible_projects(request.user).filter(pk=pk).select_related("active_phase").first()
    if project is None:
        raise Http404("No such project.")
    return render(request, "autopilot/project_detail.html", {"project": project})
