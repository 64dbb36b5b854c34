"""django-filter filtersets for the core API (shared by any list door that needs the same filters)."""

from __future__ import annotations

import django_filters

from autopilot.errors import NotFound
from autopilot.models import AutonomyMode, Event, Project
from autopilot.permissions import visible_projects


class ProjectFilterSet(django_filters.FilterSet):
    autonomy_mode = django_filters.ChoiceFilter(choices=AutonomyMode.choices)
    paused = django_filters.BooleanFilter()
    q = django_filters.CharFilter(method="filter_q", label="Name or slug contains")

    class Meta:
        model = Project
        fields = ["autonomy_mode", "paused"]

    def filter_q(self, queryset, name, value):
        from django.db.models import Q

        return queryset.filter(Q(name__icontains=value) | Q(slug__icontains=value))


class EventFilterSet(django_filters.FilterSet):
    project = django_filters.NumberFilter(method="filter_project", label="Project id (must be visible to you)")
    after = django_filters.NumberFilter(field_name="id", lookup_expr="gt", label="Only events with a larger id")
    kind = django_filters.CharFilter(method="filter_kind", label='Event kind; a value ending in "." is a prefix')
    subject_type = django_filters.CharFilter()
    subject_id = django_filters.NumberFilter()

    class Meta:
        model = Event
        fields = ["project", "after", "kind", "subject_type", "subject_id"]

    def filter_project(self, queryset, name, value):
        user = getattr(self.request, "user", None)
        if not visible_projects(user).filter(pk=value).exists():
            raise NotFound(f"Project '{int(value)}' was not found.")
        return queryset.filter(project_id=value)

    def filter_kind(self, queryset, name, value):
        return queryset.filter(kind__startswith=value) if value.endswith(".") else queryset.filter(kind=value)
