"""Back-office for the core app: projects and their members, the event log.

The manager extends the project admin with task/run counts and a tick action (autopilot.manager.admin),
and has proposals and file statistics in its own admin.

Rules kept here:
- Every list is one query plus a constant: counts come from subqueries annotated in get_queryset,
  foreign keys shown in lists are in list_select_related.
- Writes go through services: project create/update (basic fields and autonomy settings),
  membership changes, pause/resume/mode actions —
  so each change is an Event naming the admin user who made it.
- The event log is append-only: viewable, never added, changed or deleted here (a project's events
  go with the project when its owner deletes it).
- Who may change which project field is autopilot.permissions.FIELD_ROLES, as on every other door:
  fields a user may not change are read-only for them, adding a project needs the right to register
  repositories, and non-superusers see only the projects they are members of.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from autopilot import services
from autopilot.errors import ApplicationError
from autopilot.models import AutonomyMode, Event, Project, ProjectMembership, Role
from autopilot.permissions import FIELD_ROLES, has_role, has_site_trust, refused_fields, visible_projects

admin.site.site_header = "Autopilot back-office"
admin.site.site_title = "Autopilot admin"
admin.site.index_title = "Projects, plans, runs and the event log"


def count_of(model, fk: str, outer: str = "pk", **filters) -> Coalesce:
    """A correlated COUNT subquery: `model` rows whose `fk` equals the outer row's `outer`."""
    subquery = (
        model._default_manager.filter(**{fk: OuterRef(outer)}, **filters)
        .order_by()
        .values(fk)
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(subquery, output_field=IntegerField()), 0)


def admin_link(obj, text: str | None = None) -> str:
    if obj is None:
        return "—"
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, text if text is not None else str(obj))


def apply_each(modeladmin: admin.ModelAdmin, request, queryset, verb: str, call) -> None:
    """An admin action's body: call `call(obj)` (a service) for each selected row in pk order, then
    report how many succeeded and each refusal (the service's message), without a 500."""
    done, errors = 0, []
    for obj in queryset.order_by("pk"):
        try:
            call(obj)
            done += 1
        except ApplicationError as exc:
            errors.append(f"{obj}: {exc.message}")
    report_outcome(modeladmin, request, done, errors, verb)


def report_outcome(modeladmin: admin.ModelAdmin, request, done: int, errors: list[str], verb: str) -> None:
    if done:
        modeladmin.message_user(request, f"{verb}: {done}.", messages.SUCCESS)
    for error in errors[:10]:
        modeladmin.message_user(request, error, messages.ERROR)
    if len(errors) > 10:
        modeladmin.message_user(request, f"… and {len(errors) - 10} more refused.", messages.ERROR)


# --- Project ------------------------------------------------------------------------------------


class ProjectAdminForm(forms.ModelForm):
    class Meta:
        model = Project
        fields = "__all__"  # noqa: DJ007 - the admin narrows it to its fieldsets

    actor = None  # the admin user; set by ProjectAdmin.get_form

    def clean(self):
        cleaned = super().clean()
        repo_fields = {"repo_path", "base_branch", "subdirectory"}
        if repo_fields & set(self.changed_data) and not (repo_fields & set(self.errors)):
            args = (
                cleaned.get("repo_path") or self.instance.repo_path or "",
                cleaned.get("base_branch") or self.instance.base_branch or "main",
            )
            subdirectory = cleaned.get("subdirectory", self.instance.subdirectory) or ""
            try:
                if {"repo_path", "subdirectory"} & set(self.changed_data) or not self.instance.pk:
                    services.check_repository(
                        actor=self.actor,
                        repo_path=args[0],
                        base_branch=args[1],
                        subdirectory=subdirectory,
                        project=self.instance,
                    )
                else:
                    services.validate_repository(*args, subdirectory)
            except ApplicationError as exc:
                self.add_error("repo_path", exc.message)
        # The services check these too; checking here shows the message on the field instead of a 500.
        if "model_matrix" in self.changed_data and "model_matrix" in cleaned:
            try:
                services._validate_model_matrix(cleaned["model_matrix"])
            except ApplicationError as exc:
                self.add_error("model_matrix", exc.message)
        allowlist = cleaned.get("command_allowlist")
        if allowlist is not None and not (
            isinstance(allowlist, list) and all(isinstance(i, str) and i for i in allowlist)
        ):
            self.add_error("command_allowlist", 'A JSON list of program names, e.g. ["pytest", "ruff"].')
        phase = cleaned.get("active_phase")
        if phase is not None and self.instance.pk and phase.project_id != self.instance.pk:
            self.add_error("active_phase", "The active phase must be a plan node of this project.")
        return cleaned


class MembershipInline(admin.TabularInline):
    """Change a member's role or remove them here (through membership_set / membership_remove).
    Adding a member is on the membership page (linked above the inline): a user picker per row would
    cost a query per row."""

    model = ProjectMembership
    extra = 0
    fields = ("user", "role", "created_at")
    readonly_fields = ("user", "created_at")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user", "project")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return obj is None or has_role(request.user, obj, FIELD_ROLES["members"])

    def has_delete_permission(self, request, obj=None):
        return obj is None or has_role(request.user, obj, FIELD_ROLES["members"])


MANAGER_FIELDS = ("tick_pending", "last_tick_at", "last_tick_summary")  # written by the manager only


def _set_mode_action(mode: str):
    def action(modeladmin, request, queryset):
        modeladmin.apply_autonomy(request, queryset, f"Autonomy mode set to {mode}", autonomy_mode=mode)

    action.__name__ = f"set_mode_{mode}"
    return admin.action(description=f"Set autonomy mode: {AutonomyMode(mode).label}")(action)


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    form = ProjectAdminForm
    list_display = (
        "name",
        "slug",
        "autonomy_mode",
        "paused",
        "max_parallel_runs",
        "members",
        "updated_at",
    )
    list_filter = ("autonomy_mode", "paused", "plan_order_policy", "allow_shell")
    search_fields = ("name", "slug", "repo_path", "description")
    raw_id_fields = ("active_phase",)
    inlines = (MembershipInline,)
    actions = [
        "pause_autopilot",
        "resume_autopilot",
        *(_set_mode_action(mode) for mode in AutonomyMode.values),
    ]
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "name",
                    "slug",
                    "description",
                    "add_member",
                    "related",
                    "created_by",
                    "created_at",
                    "updated_at",
                )
            },
        ),
        (
            "Repository",
            {
                "fields": (
                    "repo_path",
                    "subdirectory",
                    "base_branch",
                    "test_command",
                    "setup_script",
                    "command_allowlist",
                    "allow_shell",
                    "setup_network",
                )
            },
        ),
        (
            "Autonomy (changes are recorded as events)",
            {
                "fields": (
                    "autonomy_mode",
                    "paused",
                    "active_phase",
                    "max_parallel_runs",
                    "default_run_budget_usd",
                    "daily_budget_usd",
                    "max_attempts",
                    "auto_complete_on_tests",
                    "plan_order_policy",
                    "model_matrix",
                    "context_budget_tokens",
                )
            },
        ),
        (
            "Manager",
            {"fields": ("tick_pending", "last_tick_at", "last_tick_summary"), "classes": ("collapse",)},
        ),
    )

    def get_readonly_fields(self, request, obj=None):
        fixed = ("slug", "add_member", "related", "created_by", "created_at", "updated_at", *MANAGER_FIELDS)
        if obj is None:
            return fixed  # adding needs the right to register repositories: the creator may set everything
        return (*fixed, *refused_fields(request.user, obj, [f for f in FIELD_ROLES if f != "members"]))

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"actor": request.user})

    def has_add_permission(self, request):
        return super().has_add_permission(request) and has_site_trust(request.user)

    def has_delete_permission(self, request, obj=None):
        if obj is None:
            return super().has_delete_permission(request) or (
                request.user.is_active and request.user.project_memberships.filter(role=Role.OWNER).exists()
            )
        return has_role(request.user, obj, Role.OWNER)

    def get_deleted_objects(self, objs, request):
        """The event log refuses deletes on its own page; a project's owner deletes the project with
        everything in it (its events, runs, tasks…), so the cascade needs no per-model permission."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        if all(has_role(request.user, obj, Role.OWNER) for obj in objs):
            perms_needed = set()
        return deleted, counts, perms_needed, protected

    @admin.display(description="Browse")
    def related(self, obj):
        if obj is None or obj.pk is None:
            return "—"
        links = [
            (reverse("admin:blueprints_blueprint_changelist"), "blueprints"),
            (reverse("admin:blueprints_task_changelist"), "tasks"),
            (reverse("admin:runs_executionrun_changelist"), "runs"),
            (reverse("admin:autopilot_event_changelist"), "events"),
        ]
        return format_html_join(
            " · ", '<a href="{}?project__id__exact={}">{}</a>', ((url, obj.pk, label) for url, label in links)
        )

    @admin.display(description="Members")
    def add_member(self, obj):
        if obj is None or obj.pk is None:
            return "You become the owner; add members after saving."
        add = reverse("admin:autopilot_projectmembership_add") + f"?project={obj.pk}"
        listing = reverse("admin:autopilot_projectmembership_changelist") + f"?project__id__exact={obj.pk}"
        return format_html('<a href="{}">Add a member</a> · <a href="{}">all members</a>', add, listing)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if not request.user.is_superuser:
            queryset = queryset.filter(pk__in=visible_projects(request.user).values("pk"))
        return queryset.annotate(
            member_count=count_of(ProjectMembership, "project"),
        )

    @admin.display(description="Members", ordering="member_count")
    def members(self, obj):
        return obj.member_count

    # Writes: through the services, so every change is an Event with the acting user.

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if not change:
            fields = {name: data[name] for name in services.AUTONOMY_FIELDS if name in data}
            fields["allow_shell"] = data.get("allow_shell", False)
            fields["setup_network"] = data.get("setup_network", False)
            created = services.project_create(
                name=data["name"],
                repo_path=data["repo_path"],
                base_branch=data.get("base_branch") or "main",
                subdirectory=data.get("subdirectory") or "",
                description=data.get("description") or "",
                test_command=data.get("test_command") or "",
                setup_script=data.get("setup_script") or "",
                command_allowlist=data.get("command_allowlist") or [],
                actor=request.user,
                **fields,
            )
            for field in Project._meta.concrete_fields:
                setattr(obj, field.attname, getattr(created, field.attname))
            obj._state.adding = False
            obj._state.db = created._state.db
            return
        basic = {name: data[name] for name in form.changed_data if name in services.BASIC_FIELDS}
        autonomy = {name: data[name] for name in form.changed_data if name in services.AUTONOMY_FIELDS}
        if basic:
            services.project_update(project=obj, actor=request.user, **basic)
        if autonomy:
            services.project_update_autonomy(project=obj, actor=request.user, **autonomy)
        obj.refresh_from_db()

    def save_formset(self, request, form, formset, change):
        if formset.model is not ProjectMembership:
            return super().save_formset(request, form, formset, change)
        project = form.instance
        instances = formset.save(commit=False)
        for membership in formset.deleted_objects:
            services.membership_remove(project=project, user=membership.user, actor=request.user)
        for membership in instances:
            services.membership_set(
                project=project, user=membership.user, role=membership.role, actor=request.user
            )

    def delete_model(self, request, obj):
        services.project_delete(project=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        apply_each(
            self,
            request,
            queryset,
            "Deleted",
            lambda project: services.project_delete(project=project, actor=request.user),
        )

    def apply_autonomy(self, request, queryset: QuerySet[Project], verb: str, **changes) -> None:
        apply_each(
            self,
            request,
            queryset,
            verb,
            lambda project: services.project_update_autonomy(project=project, actor=request.user, **changes),
        )

    @admin.action(description="Pause the autopilot")
    def pause_autopilot(self, request, queryset):
        self.apply_autonomy(request, queryset, "Paused", paused=True)

    @admin.action(description="Resume the autopilot")
    def resume_autopilot(self, request, queryset):
        self.apply_autonomy(request, queryset, "Resumed", paused=False)


@admin.register(ProjectMembership)
class ProjectMembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "project", "role", "created_at")
    list_filter = ("role",)
    list_select_related = ("user", "project")
    search_fields = ("user__username", "user__email", "project__name", "project__slug")
    autocomplete_fields = ("project", "user")
    readonly_fields = ("created_at",)

    def get_readonly_fields(self, request, obj=None):
        # Moving a membership to another project or user is a remove + add, not an edit.
        return ("project", "user", "created_at") if obj else ("created_at",)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(project__in=visible_projects(request.user).values("pk"))

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "project" and not request.user.is_superuser:
            # Only a project's owners change its members (FIELD_ROLES["members"]).
            kwargs["queryset"] = Project.objects.filter(
                memberships__user=request.user, memberships__role=Role.OWNER
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_change_permission(self, request, obj=None):
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or has_role(request.user, obj.project, FIELD_ROLES["members"]))

    def has_delete_permission(self, request, obj=None):
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or has_role(request.user, obj.project, FIELD_ROLES["members"]))

    def save_model(self, request, obj, form, change):
        saved = services.membership_set(project=obj.project, user=obj.user, role=obj.role, actor=request.user)
        obj.pk = saved.pk
        obj.created_at = saved.created_at

    def delete_model(self, request, obj):
        services.membership_remove(project=obj.project, user=obj.user, actor=request.user)

    def delete_queryset(self, request, queryset):
        for membership in queryset.select_related("project", "user"):
            services.membership_remove(project=membership.project, user=membership.user, actor=request.user)


# --- Event log ----------------------------------------------------------------------------------


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    """Append-only audit log: view only."""

    list_display = ("id", "created_at", "kind", "project", "subject", "actor")
    ordering = ("-id",)  # newest first
    list_filter = ("kind", "subject_type")
    list_select_related = ("project", "actor")
    search_fields = ("kind", "subject_type", "=subject_id", "actor__username", "project__name")
    show_full_result_count = False
    readonly_fields = ("id", "created_at", "kind", "project", "subject_type", "subject_id", "actor", "data")
    fields = readonly_fields

    @admin.display(description="Subject")
    def subject(self, obj):
        return f"{obj.subject_type} #{obj.subject_id}" if obj.subject_type else "—"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
