"""Web pages for runs (htmx): a project's runs with a "new run" form, a run's detail page with live
steps, approvals, messages, stop and rollback, its analysis, and a step-by-step replay.

Thin: permissions via autopilot.permissions, reads via runs.selectors / runs.trajectory, writes via
runs.services. The live part of the run page is the `live` partial, refreshed over htmx whenever
the run's websocket delivers an event (autopilot/static/autopilot/app.js).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from autopilot.errors import ApplicationError, NotFound
from autopilot.models import Event, Role
from autopilot.permissions import has_role
from autopilot.web import project_or_404, require_role_or_404
from blueprints.selectors import task_get
from runs import alignment, interactive, selectors, services, trajectory, views_sessions, views_terminal
from runs.backends import backend_label
from runs.bundle import sent_prompt
from runs.models import AgentBackend, ExecutionRun, ExecutionStep, RunKind


def _run(request, run_id: int, minimum: str = Role.VIEWER) -> ExecutionRun:
    try:
        run = selectors.run_get(run_id, with_steps=True)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    require_role_or_404(request.user, run.project, minimum)
    return run


def diff_rows(diff: str) -> list[tuple[str, str]]:
    rows = []
    for line in (diff or "").splitlines():
        if line.startswith(("+++", "---")):
            css = "diff-file"
        elif line.startswith("@@"):
            css = "diff-hunk"
        elif line.startswith("+"):
            css = "diff-add"
        elif line.startswith("-"):
            css = "diff-del"
        else:
            css = ""
        rows.append((css, line))
    return rows


def step_summary(step: ExecutionStep) -> str:
    data = step.input or {}
    for key in ("command", "cmd", "file_path", "path", "pattern", "query", "body", "script"):
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def _decorate(steps) -> list[ExecutionStep]:
    out = []
    for step in steps:
        step.diff_rows = diff_rows(step.diff)
        step.summary = step_summary(step)
        step.can_rollback = step.status == ExecutionStep.Status.COMPLETED and bool(
            (step.rollback or {}).get("path")
        )
        out.append(step)
    return out


def _live_context(request, run: ExecutionRun, error: str = "") -> dict:
    steps = _decorate(run.steps.all())
    data = selectors.run_to_dict(run, steps=steps)
    return {
        "project": run.project,
        "run": run,
        "steps": steps,
        "messages_to_run": list(run.messages.all()),
        "data": data,
        "label": backend_label(run.agent_backend),
        "is_demo": run.agent_backend == AgentBackend.SCRIPTED,
        "can_operate": has_role(request.user, run.project, Role.OPERATOR),
        "waiting": [s for s in steps if s.status == ExecutionStep.Status.NEEDS_APPROVAL],
        "error": error,
    }


def _prompt_context(run: ExecutionRun) -> dict:
    """The run page's "Prompt as sent" panel: the stored parts (runs.bundle), what was left out."""
    parts = run.prompt_parts or []
    kept = [p for p in parts if p.get("state") != "dropped"]
    return {
        "prompt_parts": parts,
        "prompt_kept": len(kept),
        "prompt_tokens": sum(p.get("tokens", 0) for p in kept),
        "prompt_left_out": [p.get("label", "") for p in parts if p.get("state") == "dropped"],
        "sent_prompt": sent_prompt(run),
        # Still to come: the worker records the parts when the run starts.
        "prompt_waiting": not parts and not run.is_terminal and run.started_at is None,
    }


@login_required
def project_runs(request, pk: int):
    """The project's Runs tab: the sessions history filtered to the project, with the launch form."""
    project = project_or_404(request, pk)
    error = ""
    form = {
        "project": str(project.pk),
        "task": "",
        "prompt": "",
        "agent": project.agent_for("code")[0],
        "model": "",
        "budget": "",
    }
    if request.method == "POST":
        require_role_or_404(request.user, project, Role.OPERATOR)
        form.update(
            {k: (request.POST.get(k) or "").strip() for k in ("task", "prompt", "agent", "model", "budget")}
        )
        run, error = views_sessions.launch_run(request, project=project, form=form)
        if run is not None:
            return redirect("run-detail", run_id=run.pk)
    context, status = views_sessions.sessions_context(request, project=project)
    if request.htmx and request.GET.get("part") == "table":
        return render(request, "runs/_sessions_table.html", context, status=status)
    context.update(views_sessions.launch_context(request, form=form, error=error, project=project))
    context.update(
        project=project,
        can_operate=has_role(request.user, project, Role.OPERATOR),
        last_event=views_sessions.last_event_id(),
    )
    return render(request, "runs/run_list.html", context, status=400 if error else status)


@login_required
def run_detail(request, run_id: int):
    run = _run(request, run_id)
    context = _live_context(request, run)
    if request.htmx and request.GET.get("part") == "live":
        return render(request, "runs/run_detail.html#live", context)
    context.update(_prompt_context(run))
    if request.htmx and request.GET.get("part") == "prompt":
        return render(request, "runs/run_detail.html#prompt", context)
    context["last_event"] = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
    context["analysis"] = trajectory.analyze(run) if run.is_terminal else None
    context["terminal"] = views_terminal.terminal_context(request, run)
    context["taken_over"] = (
        run.kind == RunKind.AUTONOMOUS and not run.is_terminal and interactive.taken_over(run)
    )
    return render(request, "runs/run_detail.html", context)


RUN_ACTIONS = {
    *("stop", "rollback", "message", "approve", "reject", "advance", "retry", "align"),
    *("takeover", "handback"),
}


@login_required
@require_POST
def run_action(request, run_id: int, action: str):
    if action not in RUN_ACTIONS:
        raise Http404("Unknown action.")
    run = _run(request, run_id, Role.OPERATOR)
    post = request.POST
    error = ""
    try:
        if action == "stop" and run.kind == RunKind.INTERACTIVE:
            interactive.finish(run, actor=request.user, reason=post.get("reason") or "")
        elif action == "takeover":
            interactive.takeover(run, actor=request.user)
            if interactive.paused(run):
                interactive.open_takeover(run)
        elif action == "handback":
            interactive.handback(run, note=post.get("note", ""), actor=request.user)
        elif action == "stop":
            services.run_stop(
                run=run,
                actor=request.user,
                reason=post.get("reason") or "stopped from the web UI",
                force=post.get("force") == "1",
            )
        elif action == "rollback":
            services.run_rollback(run=run, actor=request.user)
        elif action == "message":
            services.run_message(run=run, body=post.get("body", ""), actor=request.user)
        elif action == "advance":
            services.run_advance(run=run, actor=request.user)
        elif action == "align":
            alignment.check_run(run, llm=post.get("llm") == "1")
        elif action == "retry":
            new = services.run_retry(run=run, actor=request.user)
            return _redirect(request, reverse("run-detail", args=[new.pk]))
        else:
            step = run.steps.filter(pk=post.get("step")).first()
            if step is None:
                raise ApplicationError("No such step in this run.")
            if action == "approve":
                services.run_approve(step=step, actor=request.user, note=post.get("note", ""))
            else:
                services.run_reject(step=step, actor=request.user, message=post.get("message", ""))
    except ApplicationError as exc:
        error = exc.message
    return _after(request, run, error)


@login_required
@require_POST
def task_interactive(request, pk: int, task_id: int):
    """The task page's "Open a terminal session" button: an interactive session on the task (operator)."""
    project = project_or_404(request, pk, Role.OPERATOR)
    try:
        task = task_get(project, task_id)
        run = interactive.start(task=task, actor=request.user, agent=request.POST.get("agent") or None)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return _redirect(request, reverse("task-detail", args=[project.pk, task_id]))
    return _redirect(request, reverse("run-detail", args=[run.pk]))


@login_required
@require_POST
def step_rollback(request, run_id: int, step_id: int):
    run = _run(request, run_id, Role.OPERATOR)
    step = run.steps.filter(pk=step_id).first()
    if step is None:
        raise Http404("No such step.")
    error = ""
    try:
        services.step_rollback(step=step, actor=request.user)
    except ApplicationError as exc:
        error = exc.message
    return _after(request, run, error)


def _redirect(request, url: str):
    if request.htmx:
        from django_htmx.http import HttpResponseClientRedirect

        return HttpResponseClientRedirect(url)
    return redirect(url)


def _after(request, run: ExecutionRun, error: str):
    if request.htmx and request.POST.get("from") == "card":
        # A dashboard card: the card's board re-renders itself (app.js); an error travels as a message.
        if error:
            messages.error(request, f"Run #{run.pk}: {error}")
        return HttpResponse(status=204)
    if request.htmx:
        fresh = selectors.run_get(run.pk, with_steps=True)
        return render(request, "runs/run_detail.html#live", _live_context(request, fresh, error))
    if error:
        messages.error(request, error)
    return redirect("run-detail", run_id=run.pk)


@login_required
def run_replay(request, run_id: int):
    run = _run(request, run_id)
    frames = list(trajectory.replay(run))
    try:
        position = int(request.GET.get("step", 1))
    except ValueError:
        position = 1
    position = max(0, min(position, len(frames)))
    shown = frames[:position]
    for frame in shown:
        frame.step["diff_rows"] = diff_rows(frame.step.get("diff") or "")
    context = {
        "project": run.project,
        "run": run,
        "frames": shown,
        "position": position,
        "total": len(frames),
        "current": shown[-1] if shown else None,
        "label": backend_label(run.agent_backend),
        "is_demo": run.agent_backend == AgentBackend.SCRIPTED,
    }
    if request.htmx:
        return render(request, "runs/run_replay.html#player", context)
    return render(request, "runs/run_replay.html", context)
