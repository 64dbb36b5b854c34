"""Web pages for blueprints (htmx): versions with their diff, the upload/paste form with live progress of
its IngestionJob, and the plan tree. Thin: permissions via autopilot.permissions, writes via
blueprints.ingestion.

The plan tree must stay usable with thousands of nodes: it is one query for the nodes, one aggregated
query for the task counts per node and status, and the nested <details> markup is built in one pass
(no template include per node).
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseStopPolling

from autopilot.errors import ApplicationError
from autopilot.models import Role
from autopilot.permissions import has_role
from autopilot.web import project_or_404
from blueprints.ingestion import ingestion_job_create
from blueprints.models import Blueprint, BlueprintSectionSummary, IngestionJob, PlanNode, Task
from blueprints.pinning import explicit_pins, pinned_indexes, plan_node_pin
from blueprints.search import highlight, search_sections
from blueprints.selectors import tree_index

DIFF_CATEGORIES = ("added", "changed", "moved", "removed")


class IngestForm(forms.Form):
    title = forms.CharField(max_length=300, required=False)
    text = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 10, "placeholder": "# Phase 1\n\n## Feature\n\n- [ ] task"}),
        required=False,
        strip=False,
        label="Paste the spec",
    )
    file = forms.FileField(required=False, label="or upload a file")
    generate_tasks = forms.BooleanField(required=False, initial=True, label="Generate tasks and dependencies")


@login_required
def blueprint_versions(request, pk: int):
    project = project_or_404(request, pk)
    versions = list(Blueprint.objects.filter(project=project).order_by("-version"))
    selected = None
    wanted = request.GET.get("version")
    if wanted and wanted.isdigit():
        selected = next((b for b in versions if b.version == int(wanted)), None)
    if selected is None:
        selected = next(
            (b for b in versions if b.status == Blueprint.Status.ACTIVE), versions[0] if versions else None
        )
    jobs = list(
        IngestionJob.objects.filter(project=project)
        .defer("source_text")
        .select_related("blueprint")
        .only("id", "status", "stage", "progress", "error", "title", "created_at", "blueprint__version")[:5]
    )
    context = {
        "project": project,
        "versions": versions,
        "selected": selected,
        "diff": _diff_context(selected),
        "form": IngestForm(),
        "jobs": jobs,
        "can_write": has_role(request.user, project, Role.OPERATOR),
    }
    if request.htmx and request.htmx.target == "version-diff":
        return render(request, "blueprints/blueprints.html#version-diff", context)
    return render(request, "blueprints/blueprints.html", context)


def _diff_context(blueprint: Blueprint | None) -> list[tuple[str, list, int]]:
    if blueprint is None:
        return []
    diff = blueprint.diff or {}
    counts = blueprint.counts or {}
    return [(c, diff.get(c, []), counts.get(c, len(diff.get(c, [])))) for c in DIFF_CATEGORIES]


@login_required
def blueprint_diff(request, pk: int, version: int):
    project = project_or_404(request, pk)
    blueprint = Blueprint.objects.filter(project=project, version=version).first()
    if blueprint is None:
        raise Http404("No such version.")
    return render(
        request,
        "blueprints/blueprint_diff.html",
        {"project": project, "blueprint": blueprint, "diff": _diff_context(blueprint)},
    )


@login_required
@require_POST
def blueprint_ingest(request, pk: int):
    """Start an IngestionJob from the form; answer with the job's progress partial (htmx) or redirect."""
    project = project_or_404(request, pk, Role.OPERATOR)
    form = IngestForm(request.POST, request.FILES)
    error = None
    job = None
    if form.is_valid():
        upload = form.cleaned_data.get("file")
        text = form.cleaned_data.get("text") or ""
        try:
            if upload is not None:
                job = ingestion_job_create(
                    project=project,
                    text=upload.read(),
                    title=form.cleaned_data["title"] or upload.name,
                    actor=request.user,
                    generate_tasks=form.cleaned_data["generate_tasks"],
                )
            elif text.strip():
                job = ingestion_job_create(
                    project=project,
                    text=text,
                    title=form.cleaned_data["title"],
                    actor=request.user,
                    generate_tasks=form.cleaned_data["generate_tasks"],
                )
            else:
                error = "Paste the spec or choose a file."
        except ApplicationError as exc:
            error = exc.message
    else:
        error = "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items())
    if not request.htmx:
        if job is not None:
            return redirect(reverse("blueprint-job", args=[project.pk, job.pk]))
        context = {"project": project, "versions": [], "form": form, "error": error, "can_write": True}
        return render(request, "blueprints/blueprints.html", context, status=400)
    return render(
        request,
        "blueprints/blueprints.html#job",
        {"project": project, "job": job, "error": error},
        status=200,
    )


@login_required
def blueprint_job(request, pk: int, job_id: int):
    """The job's progress: a partial polled by htmx every half second; polling stops when it is done."""
    project = project_or_404(request, pk)
    job = (
        IngestionJob.objects.filter(project=project, pk=job_id)
        .defer("source_text")
        .select_related("blueprint")
        .first()
    )
    if job is None:
        raise Http404("No such ingestion job.")
    context = {"project": project, "job": job}
    if request.htmx:
        response = render(request, "blueprints/blueprints.html#job", context)
        if job.status in (IngestionJob.Status.SUCCEEDED, IngestionJob.Status.FAILED):
            stop = HttpResponseStopPolling(response.content)
            return stop
        return response
    return render(request, "blueprints/blueprint_job.html", context)


@login_required
def plan_tree(request, pk: int):
    project = project_or_404(request, pk)
    active, layout, present = tree_index(project)
    rows = [
        (
            layout.ids[i],
            layout.parent_id(i),
            layout.depths[i],
            layout.kind(i),
            layout.origin(i),
            layout.titles[i],
            layout.anchors[i],
            status,
            layout.change(i),
            layout.checked(i),
            priority,
        )
        for i, status, priority in present
    ]
    counts: dict[int, dict[str, int]] = {}
    for node_id, status, n in (
        Task.objects.filter(project=project, plan_node__isnull=False)
        .values_list("plan_node_id", "status")
        .annotate(n=Count("id"))
        .order_by()
    ):
        counts.setdefault(node_id, {})[status] = n
    open_depth = 1
    try:
        open_depth = max(0, min(6, int(request.GET.get("open", "1"))))
    except ValueError:
        pass
    can_pin = has_role(request.user, project, Role.OWNER)
    explicit = explicit_pins(project.pk)
    pins = (
        {
            layout.ids[i]: "by hand" if layout.ids[i] in explicit else "by name"
            for i in pinned_indexes(project.pk, layout)
        }
        if layout is not None
        else {}
    )
    tree = render_tree(
        rows,
        counts,
        open_depth=open_depth,
        project_id=project.pk,
        pins=pins,
        explicit=explicit,
        can_pin=can_pin,
        summaries=cached_summaries(project, layout),
    )
    query = request.GET.get("q", "")
    totals: dict[str, int] = {}
    for per_status in counts.values():
        for status, n in per_status.items():
            totals[status] = totals.get(status, 0) + n
    return render(
        request,
        "blueprints/plan.html",
        {
            "project": project,
            "active": active,
            "tree": tree,
            "node_count": len(rows),
            "totals": sorted(totals.items()),
            "open_depth": open_depth,
            "can_pin": can_pin,
            "pinned_count": len(pins),
            **_search_context(project, query),
        },
    )


@login_required
@require_POST
def plan_pin(request, pk: int):
    """The plan page's pin buttons: `pin` = "NODE_ID:on|off|default" (owner; blueprints.pinning)."""
    project = project_or_404(request, pk, Role.OWNER)
    node_id, _, value = request.POST.get("pin", "").partition(":")
    node = (
        PlanNode.objects.filter(project=project, pk=int(node_id), archived_at__isnull=True).first()
        if node_id.isdigit()
        else None
    )
    if node is None:
        messages.error(request, f"No plan node '{node_id}' in this project's current plan.")
        return redirect(reverse("plan-tree", args=[project.pk]))
    try:
        plan_node_pin(node=node, pinned=value, actor=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect(reverse("plan-tree", args=[project.pk]) + f"#node-{node.pk}")


def _search_context(project, query: str) -> dict:
    """What the search results list shows: the hits (with highlighted snippets) or the refusal."""
    context = {"query": query, "hits": [], "search_error": ""}
    if query.strip():
        try:
            hits = search_sections(project, query, limit=20)
        except ApplicationError as exc:
            context["search_error"] = exc.message
        else:
            context["hits"] = [(hit, highlight(hit.snippet, query)) for hit in hits]
    return context


@login_required
def plan_search(request, pk: int):
    """The search results list (htmx partial of the plan page; a plain GET renders the same list)."""
    project = project_or_404(request, pk)
    return render(
        request,
        "blueprints/_plan_search.html",
        {"project": project, **_search_context(project, request.GET.get("q", ""))},
    )


STATUS_LABELS = dict(Task.Status.choices)


def cached_summaries(project, layout) -> dict[int, str]:
    """The section summaries already cached for the current content of the tree's nodes (one query; the
    model's preferred over the extractive one). Missing ones are not computed on a page view."""
    if layout is None:
        return {}
    current = dict(zip(layout.ids, layout.hashes, strict=True))
    found: dict[int, str] = {}
    for node_id, content_hash, kind, text in BlueprintSectionSummary.objects.filter(
        node__project=project
    ).values_list("node_id", "content_hash", "kind", "text"):
        if current.get(node_id) == content_hash and (
            kind == BlueprintSectionSummary.Kind.LLM or node_id not in found
        ):
            found[node_id] = text
    return found


def render_tree(
    rows,
    counts,
    *,
    open_depth: int,
    project_id: int,
    pins=None,
    explicit=None,
    can_pin: bool = False,
    summaries=None,
) -> str:
    """Nested <details> for the tree (rows in document order), built in one pass. `pins`: node id → how
    it is pinned into every agent's context ("by hand", "by name"); with `can_pin` each heading gets a
    toggle submitting the page's #pin-form (and a reset to the default when it was set by hand)."""
    pins = pins or {}
    explicit = explicit or {}
    out: list[str] = []
    stack: list[tuple[int, bool]] = []  # (depth, is a <details> container) of the open <li>s
    has_children = {row[1] for row in rows if row[1] is not None}
    tasks_url = reverse("task-board", args=[project_id])

    def close():
        _, container = stack.pop()
        out.append("</ul></details></li>" if container else "</li>")

    for node_id, _parent, depth, kind, _origin, title, anchor, status, change, checked, priority in rows:
        while stack and stack[-1][0] >= depth:
            close()
        label = escape(title or "(untitled)")
        box = (
            ""
            if checked is None
            else ('<span class="box">☑</span> ' if checked else '<span class="box">☐</span> ')
        )
        badges = "".join(
            f'<a class="count status-{s}" href="{tasks_url}?plan_node={node_id}&amp;status={s}" '
            f'title="{escape(STATUS_LABELS.get(s, s))}">{n} {escape(STATUS_LABELS.get(s, s).lower())}</a>'
            for s, n in sorted(counts.get(node_id, {}).items())
        )
        change_mark = (
            f' <span class="change change-{change}">{change}</span>' if change != "unchanged" else ""
        )
        if status != PlanNode.Status.TODO:
            change_mark += f' <span class="pill node-{status}">{status.replace("_", " ")}</span>'
        if priority != 2:
            change_mark += f' <span class="muted">P{priority}</span>'
        if node_id in pins:
            how = pins[node_id]
            change_mark += f' <span class="pill pinned" title="In every agent context ({how})">pinned</span>'
        if can_pin and _origin != "checklist":
            to = "off" if node_id in pins else "on"
            change_mark += (
                f' <button type="submit" form="pin-form" name="pin" value="{node_id}:{to}" class="pin-toggle '
                f'link" data-testid="pin-{node_id}">{"unpin" if to == "off" else "pin"}</button>'
            )
            if node_id in explicit:
                change_mark += (
                    f' <button type="submit" form="pin-form" name="pin" value="{node_id}:default" '
                    f'class="pin-toggle link muted" title="Decide by the heading\'s name">default</button>'
                )
        line = (
            f'<span class="kind kind-{kind}">{kind.replace("_", " ")}</span> {box}'
            f'<span class="title" title="{escape(anchor)}">{label}</span>{change_mark}'
            f'<span class="counts">{badges}</span>'
        )
        summary = (summaries or {}).get(node_id)
        about = f'<div class="node-summary muted small">{escape(summary)}</div>' if summary else ""
        if node_id in has_children:
            opened = " open" if depth <= open_depth else ""
            out.append(f'<li id="node-{node_id}"><details{opened}><summary>{line}</summary>{about}<ul>')
            stack.append((depth, True))
        else:
            out.append(f'<li id="node-{node_id}" class="leaf">{line}{about}')
            stack.append((depth, False))
    while stack:
        close()
    return mark_safe('<ul class="plan-tree">' + "".join(out) + "</ul>")  # noqa: S308 - every value is escaped above
