"""One task filterset for the REST API and the web board (and the CLI's list)."""

from __future__ import annotations

import django_filters
from django.db.models import Q

from autopilot.filtersets import FilterSet, IdFilter, IntegerFilter
from blueprints.models import PlanNode, Task, TaskDependency


def within_node(queryset, node: PlanNode):
    """Tasks of a plan node's subtree. Anchors are slug paths, unique in the current tree, so the subtree
    is the node and the nodes whose anchor extends its own (`anchor/…`); a node removed from the spec
    (archived) has the subtree that was archived with it."""
    return queryset.filter(
        Q(plan_node__anchor=node.anchor) | Q(plan_node__anchor__startswith=node.anchor + "/"),
        plan_node__project_id=node.project_id,
        plan_node__archived_at=node.archived_at,
    )


class TaskFilterSet(FilterSet):
    project = IdFilter(field_name="project_id")
    status = django_filters.MultipleChoiceFilter(choices=Task.Status.choices)
    kind = django_filters.ChoiceFilter(choices=Task.Kind.choices)
    plan_node = IdFilter(method="filter_plan_node", label="Plan node (with its subtree)")
    priority = IntegerFilter()
    min_priority = IntegerFilter(field_name="priority", lookup_expr="gte")
    max_priority = IntegerFilter(field_name="priority", lookup_expr="lte")
    needs_review = django_filters.BooleanFilter()
    removed_from_spec = django_filters.BooleanFilter()
    q = django_filters.CharFilter(method="filter_q", label="Title or body contains")

    class Meta:
        model = Task
        fields = ["project", "status", "kind", "plan_node", "priority", "needs_review", "removed_from_spec"]

    def filter_plan_node(self, queryset, name, value):
        node = PlanNode.objects.filter(pk=int(value)).only("project_id", "anchor", "archived_at").first()
        if node is None:
            return queryset.none()
        return within_node(queryset, node)

    def filter_q(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(title__icontains=value) | Q(body__icontains=value))


class DependencyFilterSet(FilterSet):
    task = IdFilter(field_name="task_id")
    depends_on = IdFilter(field_name="depends_on_id")
    task__project = IdFilter(field_name="task__project_id", label="Project id")

    class Meta:
        model = TaskDependency
        fields = ["task", "depends_on", "source", "task__project"]
