"""Back-office for blueprints, ingestion jobs, the plan tree, tasks and dependencies.

- Writes go through blueprints.services (and so through autopilot.state.transition for statuses):
  each change is an Event naming the admin, and the manager is told when tasks change.
- History is not editable: a blueprint's source, hash and version are read-only (new versions come
  from ingestion: web, API or `autopilot blueprint ingest`, which parses, diffs and activates);
  ingestion jobs are read-only (a failed one can be retried); status fields are read-only everywhere
  and change only through actions.
- A blueprint can have 5,000+ plan nodes. Its change page shows a read-only inline capped at
  PLAN_NODE_INLINE_LIMIT of the nodes this version wrote (added, changed or moved; a version's whole
  tree is its layout: the API's nodes endpoint and the plan page show it), plus a link to the PlanNode
  changelist filtered on the blueprint (paginated, searchable, filterable): the page costs the same
  whatever the size.
- Dependencies are shown read-only (inline and changelist); deleting one goes through
  dependency_remove. Adding one needs the no-cycle check with a readable error: the task board,
  the API and `autopilot task depend` do that.
- No query per row: counts are annotated subqueries, FKs in lists are select_related, FKs to big
  tables use raw_id_fields.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.forms.models import BaseInlineFormSet
from django.urls import reverse
from django.utils.html import format_html

from autopilot.admin import apply_each, count_of
from blueprints import services
from blueprints.ingestion import PLAN_NODE_EDITABLE, blueprint_update, ingestion_job_retry, plan_node_update
from blueprints.models import Blueprint, IngestionJob, PlanNode, Task, TaskDependency
from runs.models import ExecutionRun

PLAN_NODE_INLINE_LIMIT = 50
SOURCE_PREVIEW_CHARS = 20_000


# --- Blueprint ----------------------------------------------------------------------------------


class LimitedInlineFormSet(BaseInlineFormSet):
    """Only the first `limit` rows (in the inline's ordering) are loaded and shown."""

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
    verbose_name_plural = (
        f"Plan nodes this version wrote (the first {PLAN_NODE_INLINE_LIMIT} in document order; "
        "“All plan nodes” above lists every one)"
    )

    def get_queryset(self, request):
        return super().get_queryset(request).defer("summary")

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
    search_fields = ("title", "project__name", "=content_hash")
    inlines = (PlanNodeInline,)
    actions = ["activate"]

    class Media:
        css = {"all": ("autopilot/admin.css",)}  # .source-preview

    fields = (
        "project",
        "title",
        "version",
        "status",
        "format",
        "parent",
        "all_nodes",
        "size_bytes",
        "content_hash",
        "counts",
        "diff",
        "created_by",
        "created_at",
        "updated_at",
        "source_preview",
    )
    readonly_fields = tuple(name for name in fields if name != "title")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(node_count=count_of(PlanNode, "blueprint"))

    def has_add_permission(self, request):
        return False  # versions come from ingestion (parse, diff, activate), never typed in here

    @admin.display(description="Nodes", ordering="node_count")
    def nodes(self, obj):
        return obj.node_count

    @admin.display(description="Source")
    def source_preview(self, obj):
        text = obj.source_text
        shown = text[:SOURCE_PREVIEW_CHARS]
        more = f"\n… ({len(text) - len(shown):,} more characters)" if len(text) > len(shown) else ""
        # A class, not a style attribute: the Content-Security-Policy refuses inline styles.
        return format_html('<pre class="source-preview">{}{}</pre>', shown, more)

    @admin.display(description="All plan nodes")
    def all_nodes(self, obj):
        url = reverse("admin:blueprints_plannode_changelist") + f"?blueprint__id__exact={obj.pk}"
        return format_html('<a href="{}">{} plan node(s) written by this version →</a>', url, obj.node_count)

    def save_model(self, request, obj, form, change):
        if "title" in form.changed_data:
            blueprint_update(blueprint=obj, actor=request.user, title=form.cleaned_data["title"])

    @admin.action(description="Activate (supersedes the active version; the plan tree follows)")
    def activate(self, request, queryset):
        apply_each(
            self,
            request,
            queryset,
            "Activated",
            lambda bp: blueprint_update(blueprint=bp, actor=request.user, status=Blueprint.Status.ACTIVE),
        )


# --- Ingestion jobs (read-only) -----------------------------------------------------------------


@admin.register(IngestionJob)
class IngestionJobAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "project",
        "title",
        "blueprint",
        "status",
        "stage",
        "progress_pct",
        "elapsed_s",
        "created_at",
        "finished_at",
    )
    list_filter = ("status", "stage")
    list_select_related = ("project", "blueprint")
    search_fields = ("title", "project__name", "error")
    exclude = ("source_text",)  # can be megabytes; the blueprint version keeps the text
    actions = ["retry"]

    def get_queryset(self, request):
        return super().get_queryset(request).defer("source_text")

    @admin.display(description="Progress", ordering="progress")
    def progress_pct(self, obj):
        return f"{obj.progress * 100:.0f}%"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description="Retry failed jobs")
    def retry(self, request, queryset):
        apply_each(
            self,
            request,
            queryset,
            "Queued again",
            lambda job: ingestion_job_retry(job=job, actor=request.user),
        )


# --- Plan nodes ---------------------------------------------------------------------------------


@admin.register(PlanNode)
class PlanNodeAdmin(admin.ModelAdmin):
    list_display = (
        "title",
        "kind",
        "anchor",
        "status",
        "change",
        "priority",
        "risk",
        "tasks",
        "blueprint",
        "project",
    )
    list_filter = ("kind", "status", "change", "risk", "origin")
    list_select_related = ("blueprint", "project")
    search_fields = ("title", "anchor", "summary")
    actions = ["mark_todo", "mark_in_progress", "mark_done", "archive"]
    list_per_page = 100

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(task_count=count_of(Task, "plan_node"))

    def has_add_permission(self, request):
        return False  # nodes come from ingesting a blueprint

    def get_readonly_fields(self, request, obj=None):
        editable = set(PLAN_NODE_EDITABLE)
        return tuple(f.name for f in PlanNode._meta.fields if f.name not in editable) + ("tasks",)

    @admin.display(description="Tasks", ordering="task_count")
    def tasks(self, obj):
        url = reverse("admin:blueprints_task_changelist") + f"?plan_node__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, obj.task_count)

    def save_model(self, request, obj, form, change):
        changes = {name: form.cleaned_data[name] for name in form.changed_data}
        if changes:
            plan_node_update(node=obj, actor=request.user, **changes)

    def _set_status(self, request, queryset, status: str, verb: str) -> None:
        apply_each(
            self,
            request,
            queryset,
            verb,
            lambda node: plan_node_update(node=node, actor=request.user, status=status, reason="admin"),
        )

    @admin.action(description="Mark to do (also restores archived nodes)")
    def mark_todo(self, request, queryset):
        self._set_status(request, queryset, PlanNode.Status.TODO, "Marked to do")

    @admin.action(description="Mark in progress")
    def mark_in_progress(self, request, queryset):
        self._set_status(request, queryset, PlanNode.Status.IN_PROGRESS, "Marked in progress")

    @admin.action(description="Mark done")
    def mark_done(self, request, queryset):
        self._set_status(request, queryset, PlanNode.Status.DONE, "Marked done")

    @admin.action(description="Archive")
    def archive(self, request, queryset):
        self._set_status(request, queryset, PlanNode.Status.ARCHIVED, "Archived")


# --- Tasks and dependencies ---------------------------------------------------------------------


class DependencyInline(admin.TabularInline):
    model = TaskDependency
    fk_name = "task"
    fields = ("depends_on", "depends_on_status", "source", "created_at")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    verbose_name = "dependency"
    verbose_name_plural = (
        "Depends on (add dependencies on the task board, the API or `autopilot task depend`)"
    )

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("depends_on", "task")

    @admin.display(description="Status")
    def depends_on_status(self, obj):
        return obj.depends_on.get_status_display()

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class TaskAdminForm(forms.ModelForm):
    class Meta:
        model = Task
        fields = ("project", "title", "body", "priority", "complexity", "plan_node")

    def clean(self):
        cleaned = super().clean()
        project = cleaned.get("project") or (self.instance.project if self.instance.pk else None)
        node = cleaned.get("plan_node")
        if node is not None and project is not None and node.project_id != project.pk:
            self.add_error("plan_node", "This plan node belongs to another project.")
        if node is not None and node.archived_at is not None:
            self.add_error("plan_node", "This plan node was removed from the spec (archived).")
        return cleaned


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    form = TaskAdminForm
    list_display = (
        "id",
        "title",
        "project",
        "kind",
        "status",
        "priority",
        "complexity",
        "dependencies",
        "runs",
        "attempts",
        "needs_review",
        "updated_at",
    )
    list_display_links = ("id", "title")
    list_filter = ("status", "kind", "priority", "needs_review", "removed_from_spec", "project")
    list_select_related = ("project",)
    search_fields = ("title", "body", "source_key", "=id")
    autocomplete_fields = ("project",)
    raw_id_fields = ("plan_node",)
    inlines = (DependencyInline,)
    actions = ["cancel", "reopen", "mark_done"]
    history = (
        "kind",
        "status",
        "attempts",
        "rework_count",
        "learned_priority",
        "plan_order",
        "needs_review",
        "removed_from_spec",
        "source_key",
        "created_by",
        "created_at",
        "updated_at",
        "started_at",
        "completed_at",
    )

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                dependency_count=count_of(TaskDependency, "task"),
                run_count=count_of(ExecutionRun, "task"),
            )
        )

    def get_fields(self, request, obj=None):
        editable = ("project", "title", "body", "priority", "complexity", "plan_node")
        return editable + self.history if obj else editable

    def get_readonly_fields(self, request, obj=None):
        return ("project", *self.history) if obj else ()

    @admin.display(description="Deps", ordering="dependency_count")
    def dependencies(self, obj):
        return obj.dependency_count

    @admin.display(description="Runs", ordering="run_count")
    def runs(self, obj):
        return obj.run_count

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if not change:
            created = services.task_create(
                project=data["project"],
                title=data["title"],
                body=data.get("body") or "",
                priority=data["priority"],
                complexity=data["complexity"],
                plan_node=data.get("plan_node"),
                actor=request.user,
            )
            obj.pk = created.pk
            obj._state.adding = False
            return
        changes = {name: data[name] for name in form.changed_data if name in services.EDITABLE_FIELDS}
        if changes:
            services.task_update(task=obj, actor=request.user, **changes)

    def delete_model(self, request, obj):
        services.task_delete(task=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for task in queryset.order_by("pk"):
            services.task_delete(task=task, actor=request.user)

    def _move(self, request, queryset, status: str, verb: str) -> None:
        apply_each(
            self,
            request,
            queryset,
            verb,
            lambda task: services.task_transition(task=task, to=status, actor=request.user, reason="admin"),
        )

    @admin.action(description="Cancel selected tasks")
    def cancel(self, request, queryset):
        self._move(request, queryset, Task.Status.CANCELLED, "Cancelled")

    @admin.action(description="Reopen selected tasks (to do)")
    def reopen(self, request, queryset):
        self._move(request, queryset, Task.Status.TODO, "Reopened")

    @admin.action(description="Mark selected tasks done")
    def mark_done(self, request, queryset):
        self._move(request, queryset, Task.Status.DONE, "Marked done")


@admin.register(TaskDependency)
class TaskDependencyAdmin(admin.ModelAdmin):
    list_display = ("task", "depends_on", "project", "source", "created_at")
    list_filter = ("source",)
    list_select_related = ("task__project", "depends_on")
    search_fields = ("task__title", "depends_on__title", "=task__id", "=depends_on__id")

    @admin.display(description="Project", ordering="task__project__name")
    def project(self, obj):
        return obj.task.project

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("task__project", "depends_on")

    def has_add_permission(self, request):
        return False  # needs the no-cycle check: task board, API, `autopilot task depend`

    def has_change_permission(self, request, obj=None):
        return False

    def delete_model(self, request, obj):
        services.dependency_remove(dependency=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for dependency in queryset.order_by("pk"):
            services.dependency_remove(dependency=dependency, actor=request.user)
