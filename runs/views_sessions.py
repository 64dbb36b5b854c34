"""Cross-project pages for runs: the sessions history (filters, sorting, paging, totals, compare), the
usage page (spend and tokens as server-rendered SVG charts) and the launch dialog (start a run from
anywhere).

Thin: every query starts from the caller's visible projects (runs.sessions / runs.usage), filters go
through the FilterSet the API uses (runs.filtersets.RunFilterSet), runs are created only by
runs.services.run_create, and which backends may be offered comes from runs.backends.backend_status.
"""

from __future__ import annotations

import datetime as dt

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import Http404, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django_htmx.http import HttpResponseClientRedirect

from autopilot.errors import ApplicationError, NotFound
from autopilot.manager.metrics import learning_report
from autopilot.models import Event, Project, Role
from autopilot.permissions import has_role, visible_projects
from autopilot.web import project_or_404, require_role_or_404
from blueprints.models import Task
from runs import charts, selectors, services, sessions, trajectory, usage
from runs.backends import backend_choices, backend_label
from runs.filtersets import RunFilterSet
from runs.models import AgentBackend, ExecutionRun

# The sessions table's columns: (sort key, header, numeric). Numbers sort largest first on first click.
COLUMNS = [
    ("created", "Run", False),
    ("project", "Project", False),
    ("status", "Status", False),
    ("backend", "Backend", False),
    (None, "Task / prompt", False),
    ("cost", "Cost", True),
    ("tokens", "Tokens", True),
    ("duration", "Duration", True),
    ("turns", "Turns", True),
]
NUMERIC_FIRST = {"created", "cost", "tokens", "duration", "turns"}


def _columns(current: str) -> list[dict]:
    out = []
    for key, title, numeric in COLUMNS:
        col = {"key": key, "title": title, "numeric": numeric, "direction": ""}
        if key:
            if current == key:
                col["direction"], col["next"] = "ascending", "-" + key
            elif current == "-" + key:
                col["direction"], col["next"] = "descending", key
            else:
                col["next"] = "-" + key if key in NUMERIC_FIRST else key
        out.append(col)
    return out


def _decorate(runs) -> list[ExecutionRun]:
    for run in runs:
        run.label = backend_label(run.agent_backend)
        run.duration_text = charts.seconds(run.duration.total_seconds()) if run.duration is not None else "—"
    return runs


def sessions_context(request, *, project: Project | None = None) -> tuple[dict, int]:
    """The sessions table for the caller (or one of their projects): (context, HTTP status)."""
    params = QueryDict(mutable=True)
    for key, values in request.GET.lists():  # an empty field of the filter form means "any"
        if key not in ("page", "part") and any(v.strip() for v in values):
            params.setlist(key, [v for v in values if v.strip()])
    if project is not None:
        params["project"] = str(project.pk)
    filterset = RunFilterSet(params, queryset=sessions.sessions_of(request.user), request=request)
    valid = filterset.is_valid()
    rows = filterset.qs if valid else filterset.queryset.none()
    page = sessions.sessions_page(rows, request.GET.get("page"))
    _decorate(page.object_list)
    projects = list(visible_projects(request.user).order_by("name").only("pk", "name"))
    totals = sessions.sessions_totals(rows)
    average = totals["avg_duration"]
    totals["avg_duration_text"] = (
        f"avg {charts.seconds(average.total_seconds())}" if average is not None else "—"
    )
    context = {
        "filter": filterset,
        "errors": []
        if valid
        else [
            f"{filterset.form[name].label}: {' '.join(errs)}" for name, errs in filterset.form.errors.items()
        ],
        "page": page,
        "runs": page.object_list,
        "totals": totals,
        "columns": _columns(params.get("sort", "")),
        "projects": projects,
        "statuses": ExecutionRun.Status.choices,
        "backends": AgentBackend.choices,
        "roles": filterset.filters["role"].extra["choices"],
        "chosen_statuses": params.getlist("status"),
        "fixed_project": project,
        "can_launch": any(has_role(request.user, p, Role.OPERATOR) for p in projects),
    }
    return context, 200 if valid else 400


@login_required
def sessions_list(request):
    context, status = sessions_context(request)
    if request.htmx and request.GET.get("part") == "table":
        return render(request, "runs/_sessions_table.html", context, status=status)
    return render(request, "runs/sessions.html", context, status=status)


# --- Compare ---------------------------------------------------------------------------------------


def _readable(request, run_id) -> ExecutionRun:
    try:
        run = selectors.run_get(run_id)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    require_role_or_404(request.user, run.project, Role.VIEWER)
    return run


@login_required
def sessions_compare(request):
    ids = request.GET.getlist("run") or [v for v in (request.GET.get("a"), request.GET.get("b")) if v]
    if len(ids) != 2 or ids[0] == ids[1]:
        return render(
            request, "runs/compare.html", {"error": "Pick exactly two different runs to compare."}, status=400
        )
    a, b = (_readable(request, run_id) for run_id in ids)
    result = trajectory.compare(a, b)
    tools = sorted(set(result["a"]["tool_use"]) | set(result["b"]["tool_use"]))
    context = {
        "a": a,
        "b": b,
        "result": result,
        "tool_rows": [
            (
                tool,
                result["a"]["tool_use"].get(tool, {}).get("count", 0),
                result["b"]["tool_use"].get(tool, {}).get("count", 0),
            )
            for tool in tools
        ],
        "duration_a": charts.seconds(result["a"]["duration_seconds"])
        if result["a"]["duration_seconds"]
        else "—",
        "duration_b": charts.seconds(result["b"]["duration_seconds"])
        if result["b"]["duration_seconds"]
        else "—",
    }
    return render(request, "runs/compare.html", context)


# --- Usage -----------------------------------------------------------------------------------------

MAX_DAYS = 366


class UsageRange(forms.Form):
    start = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        data = super().clean()
        default_start, default_end = usage.default_range()
        end = data.get("end") or default_end
        start = data.get("start") or (end - dt.timedelta(days=usage.DEFAULT_DAYS - 1))
        if "start" in self.errors or "end" in self.errors:
            return data
        if start > end:
            raise forms.ValidationError("The start date is after the end date.")
        if (end - start).days >= MAX_DAYS:
            raise forms.ValidationError(f"Choose at most {MAX_DAYS} days.")
        data["start"], data["end"] = start, end
        return data


def _usage_charts(report: dict, learning: list[dict]) -> dict:
    projects = report["spending_projects"]
    days = [day for day, _ in report["per_day"]]
    daily = charts.stacked_bars(
        [day.strftime("%b %d") for day in days],
        [(p.name, [row.get(p.pk, {}).get("cost_usd", 0) for _, row in report["per_day"]]) for p in projects],
        title="Spend per day, by project",
    )
    tokens = charts.stacked_bars(
        [day.strftime("%b %d") for day in days],
        [
            (label, [sum(r.get(key, 0) for r in row.values()) for _, row in report["per_day"]])
            for key, label in (("input_tokens", "input"), ("output_tokens", "output"))
        ],
        title="Tokens per day",
        fmt=charts.count,
    )
    per_project = charts.hbars(
        [(r["name"], r["cost_usd"]) for r in report["projects"]], title="Spend per project"
    )
    capped = [r for r in report["projects"] if r["daily_cap_usd"] is not None]
    caps = charts.hbars(
        [(r["name"], r["today_usd"]) for r in capped],
        caps=[r["daily_cap_usd"] for r in capped],
        title="Today against the daily cap",
    )
    models = charts.hbars(
        [(r["model"] or "?", r["cost_usd"]) for r in report["models"]], title="Spend per model"
    )
    backends = charts.hbars(
        [(backend_label(r["agent_backend"] or "?"), r["cost_usd"]) for r in report["backends"]],
        title="Spend per backend",
    )
    cycle = charts.hbars(
        [(m["name"], m["avg_cycle_time_s"] or 0) for m in learning],
        title="Average cycle time (first run started → task done)",
        fmt=charts.seconds,
    )
    rework = charts.hbars(
        [(m["name"], m["plan_deviation_rate"] or 0) for m in learning],
        title="Rework: share of finished tasks reworked or done out of plan order",
        fmt=charts.percent,
    )
    attempts = charts.hbars(
        [(m["name"], m["avg_attempts"] or 0) for m in learning],
        title="Average attempts per finished task",
        fmt=lambda v: f"{float(v or 0):.2f}",
    )
    return {
        "daily": daily,
        "tokens": tokens,
        "per_project": per_project,
        "caps": caps,
        "models": models,
        "backends": backends,
        "cycle": cycle,
        "rework": rework,
        "attempts": attempts,
    }


@login_required
def usage_page(request):
    form = UsageRange(request.GET or None)
    projects = list(visible_projects(request.user).order_by("name"))
    context = {"form": form, "projects": projects}
    if request.GET and not form.is_valid():
        context["errors"] = [e for errs in form.errors.values() for e in errs]
        return render(request, "runs/usage.html", context, status=400)
    start, end = (
        (form.cleaned_data["start"], form.cleaned_data["end"]) if request.GET else usage.default_range()
    )
    report = usage.usage_report(projects, start, end)
    learning = learning_report(projects)
    context.update(
        report=report, learning=learning, charts=_usage_charts(report, learning), start=start, end=end
    )
    return render(request, "runs/usage.html", context)


# --- Launch ----------------------------------------------------------------------------------------

LAUNCH_FIELDS = ("project", "task", "prompt", "agent", "model", "budget")


def _operated(user) -> list[Project]:
    return [p for p in visible_projects(user).order_by("name") if has_role(user, p, Role.OPERATOR)]


def launch_context(
    request, *, form: dict, error: str = "", project: Project | None = None, task=None
) -> dict:
    """What the launch form needs: the projects the caller may start runs in, every backend with
    whether it is configured here (the unconfigured ones are shown disabled with what is missing)."""
    projects = [project] if project is not None else _operated(request.user)
    return {
        "launch": form,
        "launch_error": error,
        "launch_projects": projects,
        "launch_task": task,
        "launch_backends": backend_choices(),
        "fixed_project": project,
    }


def launch_run(request, *, project: Project, form: dict):
    """Validate the task and create the run through run_create: (run, None) or (None, error)."""
    task = None
    if form.get("task"):
        task = Task.objects.filter(pk=form["task"] if form["task"].isdigit() else 0, project=project).first()
        if task is None:
            return None, f"Task #{form['task']} is not a task of {project.name}."
    try:
        run = services.run_create(
            project=project,
            prompt=form.get("prompt", ""),
            task=task,
            agent_backend=form.get("agent") or None,
            model=form.get("model") or None,
            budget_usd=form.get("budget") or None,
            actor=request.user,
        )
    except ApplicationError as exc:
        return None, exc.message
    return run, None


def _launch_response(request, context: dict, status: int = 200):
    template = "runs/_launch_form.html" if request.htmx else "runs/launch.html"
    return render(request, template, context, status=status)


@login_required
def run_launch(request):
    if request.method == "POST":
        form = {k: (request.POST.get(k) or "").strip() for k in LAUNCH_FIELDS}
        if not form["project"].isdigit():
            context = launch_context(request, form=form, error="Choose a project.")
            return _launch_response(request, context, status=400)
        project = project_or_404(request, int(form["project"]), Role.OPERATOR)
        run, error = launch_run(request, project=project, form=form)
        if error:
            return _launch_response(request, launch_context(request, form=form, error=error), status=400)
        url = reverse("run-detail", args=[run.pk])
        return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
    form = {k: (request.GET.get(k) or "").strip() for k in LAUNCH_FIELDS}
    task = None
    if form["task"].isdigit():
        task = Task.objects.filter(pk=int(form["task"]), project__in=visible_projects(request.user)).first()
        if task is not None:
            form["project"] = str(task.project_id)
            form["prompt"] = form["prompt"] or task.title
    if form["project"].isdigit() and not form["agent"]:
        chosen = next((p for p in _operated(request.user) if p.pk == int(form["project"])), None)
        if chosen is not None:
            form["agent"] = chosen.agent_for("code")[0]
    return _launch_response(request, launch_context(request, form=form, task=task))


def last_event_id() -> int:
    return Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
