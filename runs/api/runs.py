"""REST doors for runs: list/create per project, detail with steps, and the run/step actions.

Every action validates input, checks the caller's role on the run's project (viewers read, operators
act) and calls one service. Domain errors become clean 4xx answers (autopilot.api.exceptions).
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from autopilot.api.fields import IdField
from autopilot.api.permissions import ProjectRolePermission
from autopilot.errors import ApplicationError
from autopilot.input_limits import (
    MAX_MESSAGE_CHARS,
    MAX_NOTE_CHARS,
    MAX_PROMPT_CHARS,
    MAX_RUN_TURNS,
    MAX_RUN_WALL_SECONDS,
)
from autopilot.models import Role
from autopilot.permissions import project_for, visible_projects
from blueprints.selectors import visible_tasks
from runs import interactive, selectors, services, sessions
from runs.backends import backend_label
from runs.filtersets import RunFilterSet
from runs.models import AgentBackend, ExecutionRun, ExecutionStep, RunKind, RunMessage, RunRole


class StepSerializer(serializers.ModelSerializer):
    decided_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    has_rollback = serializers.SerializerMethodField()

    class Meta:
        model = ExecutionStep
        fields = [
            "id",
            "run",
            "seq",
            "kind",
            "tool_name",
            "status",
            "risky",
            "risk_reason",
            "input",
            "output",
            "output_truncated",
            "artifact_path",
            "diff",
            "has_rollback",
            "input_tokens",
            "output_tokens",
            "cost_usd",
            "decided_by",
            "decision_note",
            "decided_at",
            "created_at",
            "started_at",
            "ended_at",
        ]
        read_only_fields = fields

    def get_has_rollback(self, obj) -> bool:
        return bool((obj.rollback or {}).get("path"))


class MessageSerializer(serializers.ModelSerializer):
    author = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = RunMessage
        fields = ["id", "run", "author", "body", "delivered_at", "created_at"]
        read_only_fields = fields


class RunSerializer(serializers.ModelSerializer):
    agent_label = serializers.SerializerMethodField()

    class Meta:
        model = ExecutionRun
        fields = [
            "id",
            "project",
            "task",
            "role",
            "kind",
            "agent_backend",
            "agent_label",
            "model",
            "prompt",
            "status",
            "status_reason",
            "autonomy_mode",
            "priority",
            "settings",
            "branch",
            "worktree_path",
            "base_commit",
            "head_commit",
            "diff_summary",
            "attempt",
            "retry_of",
            "resumed_from",
            "backend_session_id",
            "budget_usd",
            "max_turns",
            "max_wall_seconds",
            "cost_usd",
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "turns",
            "result_summary",
            "error",
            "stop_requested_at",
            "created_by",
            "created_at",
            "queued_at",
            "started_at",
            "first_step_at",
            "ended_at",
        ]
        read_only_fields = fields

    def get_agent_label(self, obj) -> str:
        return backend_label(obj.agent_backend)


class RunDetailSerializer(RunSerializer):
    steps = StepSerializer(many=True, read_only=True)
    messages = MessageSerializer(many=True, read_only=True)

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "steps", "messages"]
        read_only_fields = fields


class RunCreateInput(serializers.Serializer):
    prompt = serializers.CharField(required=False, allow_blank=True, default="", max_length=MAX_PROMPT_CHARS)
    task = IdField(required=False, allow_null=True, default=None)
    role = serializers.ChoiceField(choices=RunRole.choices, default=RunRole.CODE)
    kind = serializers.ChoiceField(
        choices=RunKind.choices,
        default=RunKind.AUTONOMOUS,
        help_text="interactive: a recorded terminal session of a human on `task` (agent: optionally "
        "claude_code or codex, whose own TUI starts in it); the other fields are for agent runs.",
    )
    agent = serializers.ChoiceField(
        choices=AgentBackend.choices, required=False, allow_null=True, default=None
    )
    model = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    budget_usd = serializers.DecimalField(
        max_digits=10, decimal_places=4, min_value=0, required=False, allow_null=True, default=None
    )
    max_turns = serializers.IntegerField(
        min_value=1, max_value=MAX_RUN_TURNS, required=False, allow_null=True, default=None
    )
    max_wall_seconds = serializers.IntegerField(
        min_value=1, max_value=MAX_RUN_WALL_SECONDS, required=False, allow_null=True, default=None
    )
    priority = serializers.IntegerField(min_value=0, max_value=5, default=2)
    settings = serializers.DictField(required=False, default=dict)


class ApproveInput(serializers.Serializer):
    step = IdField(
        required=False, allow_null=True, default=None, help_text="Step seq; default: the oldest waiting step."
    )
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=MAX_NOTE_CHARS)


class RejectInput(serializers.Serializer):
    step = IdField(
        required=False, allow_null=True, default=None, help_text="Step seq; default: the oldest waiting step."
    )
    message = serializers.CharField(help_text="Sent back to the agent.", max_length=MAX_MESSAGE_CHARS)


class MessageInput(serializers.Serializer):
    body = serializers.CharField(max_length=MAX_MESSAGE_CHARS)


class StopInput(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=MAX_NOTE_CHARS)
    force = serializers.BooleanField(default=False)


class HandbackInput(serializers.Serializer):
    note = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=MAX_MESSAGE_CHARS,
        help_text="What the agent's next turn receives, with a summary of the files you changed.",
    )


class TakeoverSerializer(serializers.Serializer):
    run = serializers.IntegerField()
    status = serializers.CharField()
    paused = serializers.BooleanField(help_text="The agent paused at a step boundary; the terminal is open.")
    terminal = serializers.BooleanField(help_text="The run's terminal (tmux) is live.")


class HandbackFileSerializer(serializers.Serializer):
    path = serializers.CharField()
    added = serializers.IntegerField()
    removed = serializers.IntegerField()


class HandbackSerializer(serializers.Serializer):
    run = serializers.IntegerField()
    files = HandbackFileSerializer(many=True)
    added = serializers.IntegerField()
    removed = serializers.IntegerField()
    message = serializers.CharField(help_text="The message the agent's next turn receives.")


class ResumeInput(serializers.Serializer):
    prompt = serializers.CharField(max_length=MAX_PROMPT_CHARS)
    settings = serializers.DictField(required=False, default=dict)


class RunListQuery(serializers.Serializer):
    """The query of GET /api/projects/{id}/runs/: a 400 naming the parameter, never a 500."""

    status = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=500,
        help_text="Statuses, comma-separated (e.g. queued,running).",
    )
    task = IdField(required=False, allow_null=True)
    agent = serializers.ChoiceField(choices=AgentBackend.choices, required=False, allow_blank=True)

    def validate_status(self, value):
        statuses = [part.strip() for part in value.split(",") if part.strip()]
        unknown = sorted(set(statuses) - set(ExecutionRun.Status.values))
        if unknown:
            raise serializers.ValidationError(
                f"Unknown status {', '.join(unknown)}; choose from {', '.join(ExecutionRun.Status.values)}."
            )
        return ",".join(statuses)


def _valid(serializer_class, request):
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _takeover_state(run: ExecutionRun) -> dict:
    paused = interactive.paused(run)
    if paused:
        interactive.open_takeover(run)
    current = ExecutionRun.objects.values_list("status", flat=True).get(pk=run.pk)
    return {"run": run.pk, "status": current, "paused": paused, "terminal": interactive.is_live(run)}


class ProjectRunsView(GenericAPIView):
    """GET: the project's runs (filters: status=a,b, task, agent). POST: start a run."""

    serializer_class = RunSerializer
    filter_backends: list = []  # the query is RunListQuery
    queryset = ExecutionRun.objects.none()  # for the schema; requests use selectors.run_list

    @extend_schema(
        responses=RunSerializer(many=True),
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, description="Statuses, comma-separated."),
            OpenApiParameter("task", OpenApiTypes.INT, description="Only the runs of this task."),
            OpenApiParameter(
                "agent", OpenApiTypes.STR, enum=AgentBackend.values, description="Agent backend."
            ),
        ],
    )
    def get(self, request, project_id: int):
        project = project_for(request.user, project_id, Role.VIEWER)
        query = RunListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        values = query.validated_data
        qs = selectors.run_list(
            project=project,
            status=values.get("status"),
            task_id=values.get("task"),
            agent=values.get("agent"),
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(RunSerializer(page, many=True).data)

    @extend_schema(request=RunCreateInput, responses={201: RunSerializer})
    def post(self, request, project_id: int):
        project = project_for(request.user, project_id, Role.OPERATOR)
        data = _valid(RunCreateInput, request)
        task = None
        if data["task"] is not None:
            # Tasks you can see only: another project's task is "no task" like a missing one.
            task = visible_tasks(request.user).filter(pk=data["task"]).first()
            if task is None:
                raise ApplicationError(f"No task #{data['task']}.")
        if data["kind"] == RunKind.INTERACTIVE:
            if task is None or task.project_id != project.pk:
                raise ApplicationError("An interactive session needs a task of this project (task).")
            run = interactive.start(
                task=task, actor=request.user, agent=data["agent"], model=data["model"] or None
            )
            return Response(RunSerializer(run).data, status=status.HTTP_201_CREATED)
        run = services.run_create(
            project=project,
            prompt=data["prompt"],
            task=task,
            role=data["role"],
            agent_backend=data["agent"],
            model=data["model"] or None,
            budget_usd=data["budget_usd"],
            max_turns=data["max_turns"],
            max_wall_seconds=data["max_wall_seconds"],
            priority=data["priority"],
            actor=request.user,
            run_settings=data["settings"],
        )
        return Response(RunSerializer(run).data, status=status.HTTP_201_CREATED)


class RunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Runs visible to the caller; detail includes steps and messages. Actions need the operator role."""

    permission_classes = [ProjectRolePermission]
    filterset_class = RunFilterSet  # shared with the web sessions history
    lookup_value_regex = r"\d+"

    def get_queryset(self):
        qs = sessions.sessions_of(self.request.user)
        if self.action == "retrieve":
            qs = qs.prefetch_related("steps__decided_by", "messages__author")
        return qs

    def get_serializer_class(self):
        return RunDetailSerializer if self.action == "retrieve" else RunSerializer

    def _run(self) -> ExecutionRun:
        return self.get_object()  # checks the object permission (operator for POST)

    def _answer(self, run: ExecutionRun, code=status.HTTP_200_OK) -> Response:
        run = selectors.run_get(run.pk, with_steps=True)
        return Response(RunDetailSerializer(run).data, status=code)

    @extend_schema(request=None, responses=StepSerializer)
    @action(detail=True, methods=["post"])
    def advance(self, request, pk=None):
        """Step-through runs: release the next pending step."""
        step = services.run_advance(run=self._run(), actor=request.user)
        return Response(StepSerializer(step).data)

    @extend_schema(request=ApproveInput, responses=StepSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        run = self._run()  # the role first: a stranger learns nothing from a validation error
        data = _valid(ApproveInput, request)
        step = services.run_approve(run=run, seq=data["step"], actor=request.user, note=data["note"])
        return Response(StepSerializer(step).data)

    @extend_schema(request=RejectInput, responses=StepSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        run = self._run()  # the role first: a stranger learns nothing from a validation error
        data = _valid(RejectInput, request)
        step = services.run_reject(run=run, seq=data["step"], actor=request.user, message=data["message"])
        return Response(StepSerializer(step).data)

    @extend_schema(request=MessageInput, responses={201: MessageSerializer})
    @action(detail=True, methods=["post"])
    def message(self, request, pk=None):
        run = self._run()  # the role first: a stranger learns nothing from a validation error
        data = _valid(MessageInput, request)
        message = services.run_message(run=run, body=data["body"], actor=request.user)
        return Response(MessageSerializer(message).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=StopInput, responses=RunSerializer)
    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        run = self._run()  # the role first: a stranger learns nothing from a validation error
        data = _valid(StopInput, request)
        if run.kind == RunKind.INTERACTIVE:  # ends now, with a commit of what changed
            run = interactive.finish(run, actor=request.user, reason=data["reason"])
        else:
            run = services.run_stop(run=run, actor=request.user, reason=data["reason"], force=data["force"])
        return Response(RunSerializer(run).data)

    @extend_schema(request=None, responses={202: TakeoverSerializer})
    @action(detail=True, methods=["post"])
    def takeover(self, request, pk=None):
        """Pause a running agent at its next step boundary and open its worktree in a terminal (tmux;
        the run page's terminal or `autopilot session attach ID`). 202: `paused` says whether it paused
        already; the terminal opens when it does."""
        run = self._run()
        interactive.takeover(run, actor=request.user)
        return Response(_takeover_state(run), status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=HandbackInput, responses=HandbackSerializer)
    @action(detail=True, methods=["post"])
    def handback(self, request, pk=None):
        """Give a taken-over run back to its agent: your changes become steps (with their diff), the
        note and a summary of them reach the agent's next turn."""
        run = self._run()  # the role first: a stranger learns nothing from a validation error
        data = _valid(HandbackInput, request)
        return Response(interactive.handback(run, note=data["note"], actor=request.user))

    @extend_schema(request=None, responses={201: RunSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        run = services.run_retry(run=self._run(), actor=request.user)
        return Response(RunSerializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ResumeInput, responses={201: RunSerializer})
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        run = self._run()  # the role first: a stranger learns nothing from a validation error
        data = _valid(ResumeInput, request)
        run = services.run_resume(
            run=run, prompt=data["prompt"], actor=request.user, run_settings=data["settings"]
        )
        return Response(RunSerializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=dict)
    @action(detail=True, methods=["post"])
    def rollback(self, request, pk=None):
        return Response(services.run_rollback(run=self._run(), actor=request.user))


class StepViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    permission_classes = [ProjectRolePermission]
    serializer_class = StepSerializer
    lookup_value_regex = r"\d+"

    def get_queryset(self):
        return ExecutionStep.objects.filter(
            run__project__in=visible_projects(self.request.user)
        ).select_related("run__project", "decided_by")

    @extend_schema(request=None, responses=dict)
    @action(detail=True, methods=["post"])
    def rollback(self, request, pk=None):
        step = self.get_object()
        return Response(services.step_rollback(step=step, actor=request.user))
