"""Serializers of the manager API: requests, and the shapes the manager's reports answer with.

The report serializers describe (for the OpenAPI schema) the dicts the manager's selectors and
services return; tests/manager/test_api_schema.py checks every key answered is declared here.
"""

from __future__ import annotations

from rest_framework import serializers

from autopilot.api.fields import IdField
from autopilot.manager.models import Proposal


class ProposalSerializer(serializers.ModelSerializer):
    task_title = serializers.CharField(source="task.title", read_only=True)

    class Meta:
        model = Proposal
        fields = [
            "id",
            "project",
            "task",
            "task_title",
            "status",
            "role",
            "agent_backend",
            "model",
            "score",
            "reason",
            "run",
            "decided_by",
            "decided_at",
            "created_at",
        ]
        read_only_fields = fields


class ProposalStatusQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Proposal.Status.choices, required=False)


class ProposalDismissSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, default="", trim_whitespace=False)


class QueueClearSerializer(serializers.Serializer):
    project = IdField(required=False, help_text="Clear only this project's queued runs.")


# --- Report shapes --------------------------------------------------------------------------------


class CapacitySerializer(serializers.Serializer):
    max_parallel_runs = serializers.IntegerField()
    project_open_runs = serializers.IntegerField()
    project_slots = serializers.IntegerField()
    global_max_runs = serializers.IntegerField()
    global_open_runs = serializers.IntegerField()
    global_slots = serializers.IntegerField()
    queue_size = serializers.IntegerField()
    queue_max = serializers.IntegerField()
    run_budget_usd = serializers.CharField()
    daily_budget_usd = serializers.CharField(allow_null=True)
    spent_today_usd = serializers.CharField()
    reserved_usd = serializers.CharField()
    budget_left_usd = serializers.CharField(allow_null=True)
    pending_proposals = serializers.IntegerField()


class PlanNodeRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    anchor = serializers.CharField()


class PlannedTaskSerializer(serializers.Serializer):
    task = serializers.IntegerField()
    title = serializers.CharField()
    status = serializers.CharField()
    priority = serializers.IntegerField()
    learned_priority = serializers.FloatField()
    plan_order = serializers.IntegerField()
    plan_node = serializers.IntegerField(allow_null=True)
    plan_node_anchor = serializers.CharField(allow_null=True)
    attempts = serializers.IntegerField()
    action = serializers.CharField(help_text="start | propose | skip")
    reasons = serializers.ListField(child=serializers.CharField())


class ManagerPlanSerializer(serializers.Serializer):
    project = serializers.IntegerField()
    mode = serializers.CharField()
    paused = serializers.BooleanField()
    active_phase = PlanNodeRefSerializer(allow_null=True)
    capacity = CapacitySerializer()
    would_start = PlannedTaskSerializer(many=True)
    would_start_count = serializers.IntegerField()
    not_started = PlannedTaskSerializer(many=True)
    tasks_by_status = serializers.DictField(child=serializers.IntegerField())
    last_tick = serializers.JSONField(help_text="What the last tick did and why (Project.last_tick_summary).")
    generated_at = serializers.DateTimeField()


class FragileNodeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    anchor = serializers.CharField()
    failures = serializers.IntegerField()
    reworks = serializers.IntegerField()
    difficulty = serializers.FloatField()
    score = serializers.IntegerField()


class FragileFileSerializer(serializers.Serializer):
    path = serializers.CharField()
    failures = serializers.IntegerField()
    reworks = serializers.IntegerField()
    runs = serializers.IntegerField()
    score = serializers.IntegerField()


class LearningMetricsSerializer(serializers.Serializer):
    project = serializers.IntegerField()
    finished_tasks = serializers.IntegerField()
    done_tasks = serializers.IntegerField()
    avg_cycle_time_s = serializers.FloatField(allow_null=True)
    cycle_times_s = serializers.ListField(child=serializers.FloatField())
    avg_difficulty = serializers.FloatField(allow_null=True)
    avg_attempts = serializers.FloatField(allow_null=True)
    fragile_nodes = FragileNodeSerializer(many=True)
    fragile_files = FragileFileSerializer(many=True)
    plan_deviation_rate = serializers.FloatField(allow_null=True)
    deviating_tasks = serializers.ListField(child=serializers.IntegerField())
    cost_total_usd = serializers.CharField()
    runs = serializers.IntegerField()
    tasks_with_runs = serializers.IntegerField()
    cost_per_task_usd = serializers.CharField(allow_null=True)
    definitions = serializers.DictField(child=serializers.CharField())


class TickProjectSerializer(serializers.Serializer):
    project = serializers.IntegerField()
    mode = serializers.CharField()
    paused = serializers.BooleanField()
    ready = serializers.IntegerField()
    started = serializers.ListField(child=serializers.JSONField())
    proposed = serializers.ListField(child=serializers.JSONField())
    skipped = serializers.DictField(child=serializers.IntegerField())
    note = serializers.CharField()
    readiness = serializers.JSONField(required=False)
    capacity = CapacitySerializer(required=False)


class TickReportSerializer(serializers.Serializer):
    reason = serializers.CharField()
    elapsed_s = serializers.FloatField()
    reaped_runs = serializers.ListField(child=serializers.IntegerField())
    recovered_tasks = serializers.ListField(child=serializers.IntegerField())
    promoted = serializers.IntegerField()
    demoted = serializers.IntegerField()
    completed_milestones = serializers.IntegerField()
    merges = serializers.DictField(
        child=serializers.ListField(child=serializers.JSONField()),
        help_text="The merge queue step, by project id: the merges done inline, or [{enqueued: true}].",
    )
    started = serializers.ListField(child=serializers.JSONField())
    proposed = serializers.ListField(child=serializers.JSONField())
    projects = TickProjectSerializer(many=True)


class PriorityChangeSerializer(serializers.Serializer):
    task = serializers.IntegerField()
    title = serializers.CharField()
    to = serializers.FloatField()

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = serializers.FloatField()  # a Python keyword: declared here
        return fields


class RefinePlanSerializer(serializers.Serializer):
    examined = serializers.IntegerField()
    changed = serializers.IntegerField()
    changes = PriorityChangeSerializer(many=True)
    formula = serializers.CharField()


class QueuedRunSerializer(serializers.Serializer):
    position = serializers.IntegerField()
    run = serializers.IntegerField()
    project = serializers.IntegerField()
    project_name = serializers.CharField()
    task = serializers.IntegerField(allow_null=True)
    task_title = serializers.CharField()
    priority = serializers.IntegerField()
    role = serializers.CharField()
    agent_backend = serializers.CharField()
    model = serializers.CharField()
    autonomy_mode = serializers.CharField()
    created_at = serializers.DateTimeField()
    prompt = serializers.CharField()


class QueueStatusSerializer(serializers.Serializer):
    size = serializers.IntegerField()
    max = serializers.IntegerField()
    active_runs = serializers.IntegerField()
    max_concurrent_runs = serializers.IntegerField()
    runs = QueuedRunSerializer(many=True)


class QueueClearResultSerializer(serializers.Serializer):
    cancelled = serializers.ListField(child=serializers.IntegerField())
    count = serializers.IntegerField()
