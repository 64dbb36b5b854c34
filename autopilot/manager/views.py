"""Manager web pages: the autopilot controls in every project header (htmx) and /projects/<id>/manager/."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponseNotAllowed
from django.shortcuts import redirect, render

from autopilot.errors import ApplicationError
from autopilot.manager import explain, metrics, proposals, queue
from autopilot.manager.models import Proposal
from autopilot.manager.tick import tick_project
from autopilot.models import AutonomyMode, Project, Role
from autopilot.permissions import header_controls, visible_projects
from autopilot.services import project_update_autonomy
from autopilot.web import require_role_or_404

OPEN_RUN_STATUSES = ("queued", "preparing", "running", "waiting_approval")


def _visible(request, pk: int) -> Project:
    project = visible_projects(request.user).filter(pk=pk).select_related("active_phase").first()
    if project is None:
        raise Http404("No such project.")
    return project


def _header(request, project: Project, *, error: str = "", status: int = 200):
    project.refresh_from_db()
    return render(
        request,
        "autopilot/_project_header.html",
        {"project": project, "header_error": error, **header_controls(request.user, project)},
        status=status,
    )


@login_required
def autonomy_update(request, pk: int):
    """POST from the header controls: mode, pause/resume, max parallel runs. GET (htmx): the header as
    it is now, re-fetched on every project change so no panel shows stale state."""
    if request.method == "GET":
        return _header(request, _visible(request, pk))
    if request.method != "POST":
        return HttpResponseNotAllowed(["GET", "POST"])
    project = _visible(request, pk)
    changes = {}
    data = request.POST
    if "autonomy_mode" in data:
        changes["autonomy_mode"] = data["autonomy_mode"]
    if "paused" in data:
        changes["paused"] = data["paused"] in ("1", "true", "on", "yes")
    error, status = "", 200
    if "max_parallel_runs" in data:
        try:
            changes["max_parallel_runs"] = int(data["max_parallel_runs"])
        except ValueError:
            error, status = (
                f"max parallel runs must be a whole number, got '{data['max_parallel_runs']}'.",
                400,
            )
    if not error:
        try:
            # Who may change which setting: FIELD_ROLES, enforced by the service (403 naming the role).
            project_update_autonomy(project=project, actor=request.user, **changes)
        except ApplicationError as exc:
            error, status = exc.message, exc.status_code
    if request.htmx or error:
        response = _header(request, project, error=error, status=status)
        if not error:  # every other panel showing the project's state re-fetches itself (app.js)
            response["HX-Trigger"] = "autopilot:project-changed"
        return response
    return redirect(request.headers.get("referer") or f"/projects/{project.pk}/")


@login_required
def manager_page(request, pk: int):
    project = _visible(request, pk)
    plan = explain.manager_plan(project)
    learned = metrics.learning_metrics(project)
    peak = max(
        [n["score"] for n in learned["fragile_nodes"]] + [f["score"] for f in learned["fragile_files"]] + [1]
    )
    cycles = learned["cycle_times_s"]
    cycle_peak = max(cycles + [1])
    context = {
        "project": project,
        "plan": plan,
        "metrics": learned,
        "peak": peak,
        "cycle_bars": [
            {
                "value": c,
                "x": i * 10,
                "h": round(60 * c / cycle_peak, 1),
                "y": round(60 - 60 * c / cycle_peak, 1),
            }
            for i, c in enumerate(cycles)
        ],
        "chart_width": max(10, len(cycles) * 10),
        "queue": queue.queue_status(
            projects=None if request.user.is_superuser else visible_projects(request.user)
        ),
        "pending": proposals.proposals_for(project, status=Proposal.Status.PENDING)[:100],
        "recent": proposals.proposals_for(project).exclude(status=Proposal.Status.PENDING)[:20],
        **header_controls(request.user, project),
        "modes": AutonomyMode.choices,
    }
    template = "autopilot/manager.html"
    if request.htmx and request.htmx.target:
        part = {"manager-plan": "plan", "manager-queue": "queue", "manager-proposals": "proposals"}.get(
            request.htmx.target
        )
        if part:
            template = f"autopilot/manager.html#{part}"
    return render(request, template, context)


@login_required
def tick_now(request, pk: int):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    project = _visible(request, pk)
    require_role_or_404(request.user, project, Role.OPERATOR)  # a 403 naming the role, not a notice
    try:
        report = tick_project(project, reason="web", actor=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.info(request, tick_message(report.projects.get(project.pk), project))
    return redirect("manager-page", pk=project.pk)


def tick_message(result, project: Project) -> str:
    """What a tick did, and why not more: from the tick's own result (its note is the idle reason)."""
    if result is None:
        return "Tick: nothing to do for this project."
    started, proposed = len(result.started), len(result.proposed)
    open_runs = project.runs.filter(status__in=OPEN_RUN_STATUSES).count()
    text = f"Tick: {started} started, {proposed} proposed"
    if not started and not proposed and result.note:
        text += f" — {result.note}"
    return f"{text}. {open_runs} run(s) of this project queued or running now."


@login_required
def proposal_decide(request, pk: int, decision: str):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    proposal = Proposal.objects.select_related("project").filter(pk=pk).first()
    if proposal is None or not visible_projects(request.user).filter(pk=proposal.project_id).exists():
        raise Http404("No such proposal.")
    require_role_or_404(request.user, proposal.project, Role.OPERATOR)
    try:
        if decision == "accept":
            run = proposals.proposal_accept(proposal=proposal, actor=request.user)
            messages.success(request, f"Proposal #{proposal.pk} accepted: run #{run.pk} queued.")
        else:
            proposals.proposal_dismiss(proposal=proposal, actor=request.user)
            messages.success(request, f"Proposal #{proposal.pk} dismissed.")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("manager-page", pk=proposal.project_id)


@login_required
def queue_clear_view(request, pk: int):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    project = _visible(request, pk)
    require_role_or_404(request.user, project, Role.OWNER)
    try:
        cancelled = queue.queue_clear(actor=request.user, projects=Project.objects.filter(pk=project.pk))
        messages.success(request, f"Cancelled {len(cancelled)} queued run(s) of this project.")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("manager-page", pk=project.pk)
