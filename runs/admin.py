"""Back-office for runs: runs with their steps inline, messages, usage records.

- Lists are one query plus a constant (list_select_related, step counts via a subquery annotation).
- Steps are read-only once their run has finished; a run's status changes only through services
  (the "Cancel" action calls run_stop, so the event names the admin user).
- Usage records are an append-only ledger; merges (Integration) and task reviews are read-only history
  (they change through runs.integration: the Integration tab, the API, `autopilot integration`).
"""

from __future__ import annotations

from django.contrib import admin

from autopilot.admin import admin_link, count_of, report_outcome
from autopilot.errors import ApplicationError
from runs import services
from runs.backends import backend_label
from runs.models import ExecutionRun, ExecutionStep, Integration, RunMessage, TaskReview, UsageRecord

STEP_FIELDS = (
    "seq",
    "kind",
    "tool_name",
    "status",
    "risky",
    "risk_reason",
    "input",
    "output",
    "diff",
    "rollback",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "decided_by",
    "decision_note",
    "started_at",
    "ended_at",
)


class ExecutionStepInline(admin.TabularInline):
    model = ExecutionStep
    extra = 0
    fields = (
        "seq",
        "kind",
        "tool_name",
        "status",
        "risky",
        "cost_usd",
        "decided_by",
        "started_at",
        "ended_at",
    )
    readonly_fields = ("decided_by",)
    show_change_link = True
    ordering = ("seq",)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("decided_by", "run")

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.is_terminal:
            return self.fields
        return super().get_readonly_fields(request, obj)

    def has_add_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class RunMessageInline(admin.TabularInline):
    model = RunMessage
    extra = 0
    fields = ("author", "body", "delivered_at", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(ExecutionRun)
class ExecutionRunAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "project",
        "task_link",
        "agent",
        "model",
        "status",
        "cost_usd",
        "turns",
        "step_count",
        "created_at",
        "ended_at",
    )
    list_filter = ("status", "agent_backend", "role", "project")
    list_select_related = ("project", "task")
    search_fields = ("prompt", "branch", "status_reason", "backend_session_id")
    date_hierarchy = "created_at"
    inlines = [ExecutionStepInline, RunMessageInline]
    actions = ["cancel_runs"]
    readonly_fields = (
        "project",
        "task",
        "role",
        "agent_backend",
        "model",
        "prompt",
        "status",
        "status_reason",
        "autonomy_mode",
        "settings",
        "worktree_path",
        "branch",
        "base_commit",
        "head_commit",
        "diff_summary",
        "worktree_removed_at",
        "lease_owner",
        "lease_expires_at",
        "heartbeat_at",
        "pid",
        "child_pids",
        "stop_requested_at",
        "stop_force",
        "last_step_seq",
        "attempt",
        "retry_of",
        "resumed_from",
        "backend_session_id",
        "cost_usd",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "turns",
        "result_summary",
        "error",
        "created_by",
        "created_at",
        "updated_at",
        "queued_at",
        "started_at",
        "first_step_at",
        "ended_at",
    )

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_steps=count_of(ExecutionStep, "run"))

    @admin.display(description="Agent", ordering="agent_backend")
    def agent(self, obj):
        return backend_label(obj.agent_backend)

    @admin.display(description="Task", ordering="task")
    def task_link(self, obj):
        return admin_link(obj.task) if obj.task_id else "—"

    @admin.display(description="Steps", ordering="_steps")
    def step_count(self, obj):
        return obj._steps

    def has_add_permission(self, request):
        return False

    @admin.action(description="Cancel selected runs (graceful stop)")
    def cancel_runs(self, request, queryset):
        done, errors = 0, []
        for run in queryset:
            try:
                services.run_stop(run=run, actor=request.user, reason="cancelled from the admin")
                done += 1
            except ApplicationError as exc:
                errors.append(exc.message)
        report_outcome(self, request, done, errors, "Stop requested")


@admin.register(ExecutionStep)
class ExecutionStepAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "run",
        "seq",
        "kind",
        "tool_name",
        "status",
        "risky",
        "cost_usd",
        "decided_by",
        "started_at",
    )
    list_filter = ("status", "kind", "risky")
    list_select_related = ("run", "decided_by")
    search_fields = ("tool_name", "output")
    readonly_fields = ("run", *STEP_FIELDS)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return obj is None or not obj.run.is_terminal


@admin.register(RunMessage)
class RunMessageAdmin(admin.ModelAdmin):
    list_display = ("id", "run", "author", "delivered_at", "created_at")
    list_select_related = ("run", "author")
    readonly_fields = ("run", "author", "body", "delivered_at", "created_at")

    def has_add_permission(self, request):
        return False


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "project",
        "run",
        "agent_backend",
        "model",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "priced",
        "created_at",
    )
    list_filter = ("priced", "agent_backend", "model", "project")
    list_select_related = ("project", "run")
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyHistory(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Integration)
class IntegrationAdmin(ReadOnlyHistory):
    list_display = (
        "id",
        "project",
        "task_link",
        "status",
        "branch",
        "target_branch",
        "strategy",
        "tests_passed",
        "attempt",
        "queued_at",
        "finished_at",
    )
    list_filter = ("status", "strategy", "tests_passed", "project")
    list_select_related = ("project", "task")
    search_fields = ("branch", "merge_commit", "status_reason", "task__title")
    date_hierarchy = "queued_at"

    @admin.display(description="Task", ordering="task")
    def task_link(self, obj):
        return admin_link(obj.task)


@admin.register(TaskReview)
class TaskReviewAdmin(ReadOnlyHistory):
    list_display = ("id", "task_link", "decision", "author", "run", "created_at")
    list_filter = ("decision",)
    list_select_related = ("task", "author", "run")
    search_fields = ("comment", "task__title")
    date_hierarchy = "created_at"

    @admin.display(description="Task", ordering="task")
    def task_link(self, obj):
        return admin_link(obj.task)
