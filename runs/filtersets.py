"""One run filterset for the REST API (`/api/runs/`) and the web sessions history (`/sessions/`).

The queryset it filters is already scoped to the caller's visible projects
(runs.selectors.runs_visible_to), so naming a project or task the caller cannot see matches nothing:
it is never an error that would reveal the object exists.
"""

from __future__ import annotations

import django_filters
from django import forms
from django.db.models import Q

from autopilot.filtersets import FilterSet, IdFilter
from runs.models import AgentBackend, ExecutionRun, RunRole

# Sort keys offered to users (the sessions table headers) → the annotated or model field.
SORTS = {
    "created": "created_at",
    "project": "project__name",
    "status": "status",
    "backend": "agent_backend",
    "cost": "cost_usd",
    "tokens": "tokens",
    "duration": "duration",
    "turns": "turns",
}


class RunFilterSet(FilterSet):
    # Bounded ids (autopilot.filtersets.IdFilter): 1e20 or -1.79e308 is a 400 naming the field.
    project = IdFilter(field_name="project_id", label="Project")
    status = django_filters.MultipleChoiceFilter(choices=ExecutionRun.Status.choices)
    agent_backend = django_filters.ChoiceFilter(choices=AgentBackend.choices, label="Backend")
    role = django_filters.ChoiceFilter(choices=RunRole.choices)
    task = IdFilter(field_name="task_id", label="Task #")
    since = django_filters.DateFilter(
        field_name="created_at",
        lookup_expr="date__gte",
        label="From",
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    until = django_filters.DateFilter(
        field_name="created_at",
        lookup_expr="date__lte",
        label="To",
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    q = django_filters.CharFilter(method="filter_q", label="Text (prompt or summary)")
    sort = django_filters.OrderingFilter(
        fields=[(field, key) for key, field in SORTS.items()],
        label="Sort",
        help_text="One of " + ", ".join(SORTS) + "; a leading '-' sorts descending.",
    )

    class Meta:
        model = ExecutionRun
        fields = ["project", "status", "agent_backend", "role", "task", "since", "until", "q"]

    def filter_q(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(prompt__icontains=value) | Q(result_summary__icontains=value))

    def filter_queryset(self, queryset):
        queryset = super().filter_queryset(queryset)
        if not self.form.cleaned_data.get("sort"):
            return queryset.order_by("-created_at", "-id")
        return queryset.order_by(*queryset.query.order_by, "-id")  # a stable order for paging
