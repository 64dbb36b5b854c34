"""Back-office for the manager: proposals, file statistics, and the project admin extended with
what the manager reads (open tasks, active runs) and its tick action.

The core registers the project admin (autopilot.admin); this module replaces the registration with a
subclass, so the core's admin never imports the layers above it. Writes go through services (or
autopilot.state.transition), so each change is an Event naming the admin user.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils import timezone

from autopilot.admin import ProjectAdmin, apply_each, count_of
from autopilot.manager.models import FileStat, Proposal
from autopilot.manager.proposals import proposal_accept, proposal_dismiss
from autopilot.manager.tick import tick_all
from autopilot.models import Project
from autopilot.state import transition
from blueprints.models import Task
from runs.models import ExecutionRun


class ManagedProjectAdmin(ProjectAdmin):
    list_display = (
        *ProjectAdmin.list_display[:-1],
        "open_tasks",
        "active_runs",
        ProjectAdmin.list_display[-1],
    )
    actions = [*ProjectAdmin.actions[:2], "tick_now", *ProjectAdmin.actions[2:]]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                open_task_count=count_of(Task, "project", status__in=Task.OPEN),
                active_run_count=count_of(ExecutionRun, "project", status__in=ExecutionRun.ACTIVE),
            )
        )

    @admin.display(description="Open tasks", ordering="open_task_count")
    def open_tasks(self, obj):
        return obj.open_task_count

    @admin.display(description="Active runs", ordering="active_run_count")
    def active_runs(self, obj):
        return obj.active_run_count

    @admin.action(description="Run a manager tick now")
    def tick_now(self, request, queryset):
        project_ids = list(queryset.values_list("pk", flat=True))
        report = tick_all(reason="admin", actor=request.user, project_ids=project_ids)
        self.message_user(
            request,
            f"Tick: {len(report.started)} run(s) started, {len(report.proposed)} "
            f"proposed, {report.promoted} task(s) became ready.",
            messages.SUCCESS,
        )


admin.site.unregister(Project)
admin.site.register(Project, ManagedProjectAdmin)


# --- Proposals ----------------------------------------------------------------------------------


@admin.register(Proposal)
class ProposalAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "task",
        "project",
        "status",
        "score",
        "role",
        "agent_backend",
        "decided_by",
        "created_at",
    )
    list_filter = ("status", "role", "agent_backend")
    list_select_related = ("task", "project", "decided_by")
    search_fields = ("task__title", "project__name", "reason")
    raw_id_fields = ("task", "run", "decided_by")
    actions = ["accept", "dismiss", "expire"]

    def has_add_permission(self, request):
        return False  # the manager makes proposals

    def get_readonly_fields(self, request, obj=None):
        return tuple(f.name for f in Proposal._meta.fields)

    @admin.action(description="Accept selected proposals (starts their runs)")
    def accept(self, request, queryset):
        apply_each(
            self, request, queryset, "Accepted", lambda p: proposal_accept(proposal=p, actor=request.user)
        )

    @admin.action(description="Dismiss selected proposals")
    def dismiss(self, request, queryset):
        apply_each(
            self,
            request,
            queryset,
            "Dismissed",
            lambda p: proposal_dismiss(proposal=p, actor=request.user, note="dismissed in admin"),
        )

    @admin.action(description="Expire selected proposals")
    def expire(self, request, queryset):
        apply_each(
            self,
            request,
            queryset,
            "Expired",
            lambda p: transition(
                p,
                Proposal.Status.EXPIRED,
                actor=request.user,
                reason="expired in admin",
                fields={"decided_by": request.user, "decided_at": timezone.now()},
            ),
        )


# --- Learning signals ---------------------------------------------------------------------------


@admin.register(FileStat)
class FileStatAdmin(admin.ModelAdmin):
    """Counters written by the manager's learning step: view only."""

    list_display = ("path", "project", "runs", "failures", "reworks", "updated_at")
    list_filter = ("project",)
    list_select_related = ("project",)
    search_fields = ("path", "project__name")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
