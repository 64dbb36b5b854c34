"""The run filterset of the REST API (ids as bounded integers: see autopilot.filtersets.FilterSet)."""

from __future__ import annotations

from autopilot.filtersets import FilterSet, IdFilter
from runs.models import ExecutionRun


class RunFilterSet(FilterSet):
    project = IdFilter(field_name="project_id")
    task = IdFilter(field_name="task_id")

    class Meta:
        model = ExecutionRun
        fields = ["project", "status", "task", "agent_backend"]
