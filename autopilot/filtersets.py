"""django-filter filtersets for the core API (shared by any list door that needs the same filters)."""

from __future__ import annotations

import django_filters
from django import forms
from django.db import models

from autopilot.errors import NotFound
from autopilot.input_limits import BIGINT_MAX
from autopilot.models import AutonomyMode, Event, Project
from autopilot.permissions import visible_projects


class IntegerFilter(django_filters.NumberFilter):
    """A whole number the database can hold (django-filter's NumberFilter takes any decimal: 1e20 or
    -1.79e308 overflowed the integer columns with a 500). Out of range or not whole: a 400 naming it."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", -BIGINT_MAX - 1)
        kwargs.setdefault("max_value", BIGINT_MAX)
        super().__init__(*args, **kwargs)


class IdFilter(IntegerFilter):
    """An object id (1 to the largest 64-bit integer). Only ids, never a lookup of the object itself:
    "no such id" and "an id you cannot see" must give the same answer (an empty list)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        super().__init__(*args, **kwargs)


class FilterSet(django_filters.FilterSet):
    """Base of every filterset: filters generated from model fields take bounded integers, and foreign
    keys take ids (django-filter's default, a ModelChoiceFilter over every row, answers "not a valid
    choice" for a missing id but filters for another project's: an oracle of what exists)."""

    FILTER_DEFAULTS = {
        **django_filters.FilterSet.FILTER_DEFAULTS,
        **{
            field: {"filter_class": IntegerFilter}
            for field in (
                models.AutoField,
                models.BigAutoField,
                models.SmallAutoField,
                models.IntegerField,
                models.BigIntegerField,
                models.SmallIntegerField,
                models.PositiveIntegerField,
                models.PositiveBigIntegerField,
                models.PositiveSmallIntegerField,
            )
        },
        models.ForeignKey: {"filter_class": IdFilter},
        models.OneToOneField: {"filter_class": IdFilter},
    }


class ProjectFilterSet(FilterSet):
    autonomy_mode = django_filters.ChoiceFilter(choices=AutonomyMode.choices)
    paused = django_filters.BooleanFilter()
    q = django_filters.CharFilter(method="filter_q", label="Name or slug contains")

    class Meta:
        model = Project
        fields = ["autonomy_mode", "paused"]

    def filter_q(self, queryset, name, value):
        from django.db.models import Q

        return queryset.filter(Q(name__icontains=value) | Q(slug__icontains=value))


class EventFilterSet(FilterSet):
    project = IdFilter(method="filter_project", label="Project id (must be visible to you)")
    after = IntegerFilter(field_name="id", lookup_expr="gt", label="Only events with a larger id")
    kind = django_filters.CharFilter(
        method="filter_kind", label='Event kind; a value ending in "." is a prefix'
    )
    subject_type = django_filters.CharFilter()
    subject_id = IntegerFilter()

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
