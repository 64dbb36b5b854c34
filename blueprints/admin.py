"""Back-office for blueprints, ingestion jobs, the plan tree, tasks and dependencies.

- History is not editable: a blueprint's source, hash and version are read-only once created;
  ingestion jobs are read-only; status fields are read-only everywhere and change only through
  actions that call autopilot.state.transition (locked, checked against TRANSITIONS, recorded).
- A blueprint can have 5,000+ plan nodes. Its change page shows a read-only inline capped at
  PLAN_NODE_INLINE_LIMIT nodes in document order, plus a link to the PlanNode changelist filtered
  on the blueprint (paginated, searchable, filterable) — the page stays fast whatever the size.
- Dependencies are shown read-only (inline and changelist; deleting one is allowed): adding one
  needs the same-project and no-cycle checks of the blueprint services (API and CLI).
- No query per row: counts are annotated subqueries, FKs in lists are select_related, FKs to big
  tables use raw_id_fields.
"""

from __future__ import annotations

import hashlib

from django.contrib import admin
from django.db import transaction
from django.db.models import Max
from django.forms.models import BaseInlineFormSet
from django.urls import reverse
from django.utils.html import format_html

from autopilot.admin import count_of, report_outcome
from autopilot.errors import ApplicationError
from autopilot.state import transition
from blueprints.models import Blueprint, IngestionJob, PlanNode, Task, TaskDependency

PLAN_NODE_INLINE_LIMIT = 50


def _tasks_changed(project_ids: set[int], reason: str) -> None:
    from autopilot.manager import hooks

    for project_id in sorted(project_ids):
        transaction.on_commit(lambda pid=project_id: hooks.on_tasks_changed(pid, reason))


def _transition_each(modeladmin, request, queryset, target: str, verb: str, **fields) -> set[int]:
    """Move each selected row to `target` through the one transition function; returns touched projects."""
    done, errors, projects = 0, [], set()
    for obj in queryset.order_by("pk"):
        try:
            transition(obj, target, actor=request.user, reason=f"{verb.lower()} in admin", fields=fields or None)
            done += 1
            projects.add(obj.project_id)
        except ApplicationError as exc:
            errors.append(exc.message)
    report_outcome(modeladmin, request, done, errors, verb)
    return projects


# --- Blueprint ----------------------------------------------------------------------------------


class LimitedInlineFormSet(BaseInlineFormSet):
    """Only the first `limit` rows (in the model's ordering) are loaded and shown."""

    limit = PLAN_NODE_INLINE_LIMIT

    def get_queryset(self):
        if not hasattr(self, "_limited_queryset"):
            self._limited_queryset = super().get_queryset()[: self.limit]
        return self._limited_queryset


class PlanNodeInline(admin.TabularInline):
    model = PlanNode
    fk_name = "blueprint"
    formset = LimitedInlineFormSet
    fields = ("order", "level", "kind", "title", "anchor", "status", "change", "priority")
    readonly_fields = fields
    ordering = ("order",)
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = f"Plan nodes (first {PLAN_NODE_INLINE_LIMIT} in document order; see “All plan nodes” above)"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Blueprint)
class BlueprintAdmin(admin.ModelAdmin):
    list_display = ("__str__", "project", "version", "status", "format", "size_bytes", "nodes", "created_at")
    list_filter = ("status", "format")
    list_select_related = ("project",)
    search_fields = ("title", "project__name", "content_hash")
    autocomplete_fields = ("project",)
    raw_id_fields = ("parent",)
    inlines = (PlanNodeInline,)
    actions = ["activate"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(node_count=count_of(PlanNode, "blueprint"))

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("project", "title", "format", "parent", "source_text")
        return (
            "project", "title", "version", "status", "format", "parent", "all_nodes", "size_bytes", "content_hash",
            "diff", "created_by", "created_at", "updated_at", "source_text",
        )

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return (
            "project", "version", "status", "parent", "all_nodes", "size_bytes", "content_hash", "diff",
            "created_by", "created_at", "updated_at", "source_text",
        )

    @admin.display(description="Nodes", ordering="node_count")
    def nodes(self, obj):
        return obj.node_count

    @admin.display(description="All plan nodes")
    def all_nodes(self, obj):
        url = reverse("admin:blueprints_plannode_changelist") + f"?blueprint__id__exact={obj.pk}"
        count = getattr(obj, "node_count", None)
        if count is None:
            count = PlanNode.objects.filter(blueprint=obj).count()
        return format_html('<a href="{}">{} plan node(s) →</a>', url, count)

    def save_model(self, request, obj, form, change):
        if change:  # title and format only: the source, hash and version are history
            super().save_model(request, obj, form, change)
            return
        with transaction.atomic():
            # Lock the project row so two concurrent adds cannot pick the same version number.
            type(obj.project)._default_manager.select_for_update().get(pk=obj.project_id)
            latest = Blueprint.objects.filter(project=obj.project).aggregate(v=Max("version"))["v"] or 0
            obj.version = latest + 1
            encoded = obj.source_text.encode()
            obj.content_hash = hashlib.sha256(encoded).hexdigest()
            obj.size_bytes = len(encoded)
            obj.status = Blueprint.Status.DRAFT
            obj.created_by = request.user
            obj.save()

    @admin.action(description="Activate (supersedes the project's active version)")
    def activate(self, request, queryset):
        done, errors = 0, []
        for blueprint in queryset.order_by("pk"):
            try:
                with transaction.atomic():
                    current = (
                        Blueprint.objects.select_for_update()
                        .filter(project_id=blueprint.project_id, status=Blueprint.Status.ACTIVE)
                        .exclude(pk=blueprint.pk)
                        .first()
                    )
                    if current is not None:
                        transition(current, Blueprint.Status.SUPERSEDED, actor=request.user, reason="activated another version in admin")
                    transition(blueprint, Blueprint.Status.ACTIVE, actor=request.user, reason="activated in admin")
                done += 1
            except ApplicationError as exc:
                errors.append(exc.message)
        report_outcome(self, request, done, errors, "Activated")


# --- Ingestion jobs (read-only) -----------------------------------------------------------------


@admin.register(IngestionJob)
class IngestionJobAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "title", "blueprint", "status", "stage", "progress_pct", "elapsed_s", "created_at",
                    "finished_at")
    list_filter = ("status", "stage")
    list_select_related = ("project", "blueprint")
    search_fields = ("title", "project__name", "error")
    exclude = ("source_text",)  # can be megabytes; the blueprint version keeps the text

    @admin.display(description="Progress", ordering="progress")
    def progress_pct(self, obj):
        return f"{obj.progress * 100:.0f}%"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


# --- Plan nodes ---------------------------------------------------------------------------------


@admin.register(PlanNode)
class PlanNodeAdmin(admin.ModelAdmin):
    list_display = ("title", "kind", "anchor", "status", "change", "priority", "risk", "tasks", "blueprint", "project")
    list_filter = ("kind", "status", "change", "risk", "origin")
    list_select_related = ("blueprint", "project")
    search_fields = ("title", "anchor", "summary")
    raw_id_fields = ("project", "blueprint", "parent")
    actions = ["mark_todo", "mark_in_progress", "mark_done", "archive"]
    list_per_page = 100

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(task_count=count_of(Task, "plan_node"))

    def has_add_permission(self, request):
        return False  # nodes come from ingesting a blueprint

    def get_readonly_fields(self, request, obj=None):
        editable = {"priority", "risk", "summary"}
        return tuple(f.name for f in PlanNode._meta.fields if f.name not in editable) + ("tasks",)

    @admin.display(description="Tasks", ordering="task_count")
    def tasks(self, obj):
        count = getattr(obj, "task_count", None)
        if count is None:
            return "—"
        url = reverse("admin:blueprints_task_changelist") + f"?plan_node__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, count)

    @admin.action(description="Mark to do")
    def mark_todo(self, request, queryset):
        _transition_each(self, request, queryset, PlanNode.Status.TODO, "Marked to do", archived_at=None)

    @admin.action(description="Mark in progress")
    def mark_in_progress(self, request, queryset):
        _transition_each(self, request, queryset, PlanNode.Status.IN_PROGRESS, "Marked in progress")

    @admin.action(description="Mark done")
    def mark_done(self, request, queryset):
        _transition_each(self, request, queryset, PlanNode.Status.DONE, "Marked done")

    @admin.action(description="Archive")
    def archive(self, request, queryset):
        from django.utils import timezone

        _transition_each(self, request, queryset, PlanNode.Status.ARCHIVED, "Archived", archived_at=timezone.now())


# --- Tasks and dependencies ---------------------------------------------------------------------


class DependencyInline(admin.TabularInline):
    model = TaskDependency
    fk_name = "task"
    fields = ("depends_on", "depends_on_status", "source", "created_at")
    readonly_fields = fields
    extra = 0
    max_num = 0
    verbose_name = "dependency"
    verbose_name_plural = "Depends on (add dependencies through the API or CLI: they are checked for cycles)"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("depends_on")

    @admin.display(description="Status")
    def depends_on_status(self, obj):
        return obj.depends_on.get_status_display()

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = (
        "id", "title", "project", "status", "priority", "complexity", "dependencies", "runs", "attempts",
        "needs_review", "updated_at",
    )
    list_display_links = ("id", "title")
    list_filter = ("status", "priority", "needs_review", "removed_from_spec", "project")
    list_select_related = ("project",)
    search_fields = ("title", "body", "source_key", "=id")
    autocomplete_fields = ("project",)
    raw_id_fields = ("plan_node", "created_by")
    inlines = (DependencyInline,)
    actions = ["cancel", "reopen"]

    def get_queryset(self, request):
        from runs.models import ExecutionRun

        return (
            super()
            .get_queryset(request)
            .annotate(
                dependency_count=count_of(TaskDependency, "task"),
                run_count=count_of(ExecutionRun, "task"),
            )
        )

    def get_readonly_fields(self, request, obj=None):
        history = (
            "status", "attempts", "rework_count", "learned_priority", "source_key", "removed_from_spec",
            "created_by", "created_at", "updated_at", "started_at", "completed_at",
        )
        return history + ("project",) if obj else history

    @admin.display(description="Deps", ordering="dependency_count")
    def dependencies(self, obj):
        return obj.dependency_count

    @admin.display(description="Runs", ordering="run_count")
    def runs(self, obj):
        return obj.run_count

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
        _tasks_changed({obj.project_id}, "task edited in admin")

    @admin.action(description="Cancel selected tasks")
    def cancel(self, request, queryset):
        projects = _transition_each(self, request, queryset, Task.Status.CANCELLED, "Cancelled")
        _tasks_changed(projects, "tasks cancelled in admin")

    @admin.action(description="Reopen selected tasks (to do)")
    def reopen(self, request, queryset):
        projects = _transition_each(self, request, queryset, Task.Status.TODO, "Reopened", completed_at=None)
        _tasks_changed(projects, "tasks reopened in admin")


@admin.register(TaskDependency)
class TaskDependencyAdmin(admin.ModelAdmin):
    list_display = ("task", "depends_on", "project", "source", "created_at")
    list_filter = ("source",)
    list_select_related = ("task__project", "depends_on")
    search_fields = ("task__title", "depends_on__title", "=task__id", "=depends_on__id")
    raw_id_fields = ("task", "depends_on")

    @admin.display(description="Project", ordering="task__project__name")
    def project(self, obj):
        return obj.task.project

    def has_add_permission(self, request):
        return False  # needs the no-cycle check of the blueprint services

    def has_change_permission(self, request, obj=None):
        return False

    def delete_model(self, request, obj):
        project_id = obj.task.project_id
        super().delete_model(request, obj)
        _tasks_changed({project_id}, "dependency removed in admin")

    def delete_queryset(self, request, queryset):
        projects = set(queryset.values_list("task__project_id", flat=True))
        super().delete_queryset(request, queryset)
        _tasks_changed(projects, "dependencies removed in admin")
