"""REST doors for integration: the merge queue of a project, its history, and a task's review.

    GET  /api/projects/{id}/integration/                     queue, merge in flight, recent, waiting, head
    GET  /api/projects/{id}/integrations/?status=&task=      history (paginated, newest first)
    GET  /api/projects/{id}/integrations/{iid}/              one merge, with its test output and conflicts
    POST /api/projects/{id}/integrations/{iid}/retry|skip|resolve/
    POST /api/tasks/{id}/review/   {decision, comment, cancel}
    GET  /api/tasks/{id}/pr_body/  a pull-request description (Markdown)

Viewers read; operators review, retry, skip and resolve. The writes are runs.integration's.
"""

from __future__ import annotations

from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from autopilot.api.fields import IdField
from autopilot.errors import NotFound
from autopilot.input_limits import MAX_MESSAGE_CHARS, MAX_NOTE_CHARS
from autopilot.models import Role
from autopilot.permissions import project_for, require_role
from blueprints.selectors import visible_tasks
from runs import integration, integration_selectors
from runs.models import Integration, TaskReview


class IntegrationSerializer(serializers.ModelSerializer):
    task_title = serializers.CharField(source="task.title", read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = Integration
        fields = [
            "id",
            "project",
            "task",
            "task_title",
            "run",
            "status",
            "status_reason",
            "branch",
            "head_commit",
            "target_branch",
            "strategy",
            "onto_commit",
            "merge_commit",
            "test_command",
            "tests_passed",
            "test_output",
            "conflict_files",
            "conflict_detail",
            "diff_summary",
            "attempt",
            "queued_at",
            "started_at",
            "finished_at",
            "created_by",
        ]
        read_only_fields = fields


class QueuedIntegrationSerializer(IntegrationSerializer):
    position = serializers.IntegerField(read_only=True, help_text="1 = the next merge.")

    class Meta(IntegrationSerializer.Meta):
        fields = ["position", *IntegrationSerializer.Meta.fields]
        read_only_fields = fields


class BranchComparisonSerializer(serializers.Serializer):
    integration_branch = serializers.CharField()
    base_branch = serializers.CharField()
    exists = serializers.BooleanField(help_text="The integration branch exists in the repository.")
    integration_head = serializers.CharField(allow_blank=True)
    base_head = serializers.CharField(allow_blank=True)
    ahead = serializers.IntegerField(help_text="Commits on the integration branch not on the base.")
    behind = serializers.IntegerField(help_text="Commits on the base not on the integration branch.")
    commits = serializers.ListField(child=serializers.DictField(), help_text="The newest commits ahead.")
    diff_stat = serializers.DictField(help_text="{files: [{path, added, removed}], added, removed}")
    problem = serializers.CharField(allow_blank=True, help_text="Why the branches could not be compared.")


class IntegrationQueueSerializer(serializers.Serializer):
    project = serializers.IntegerField(source="project.pk")
    integration_branch = serializers.CharField(source="project.integration_branch")
    integrates_into_base = serializers.BooleanField(source="project.integrates_into_base")
    merge_strategy = serializers.CharField(source="project.merge_strategy")
    review_required = serializers.BooleanField(help_text="A human approves each task before it is merged.")
    conflict_policy = serializers.CharField(source="project.conflict_policy")
    test_command = serializers.CharField(source="project.effective_integration_test_command")
    counts = serializers.DictField(child=serializers.IntegerField())
    queue = QueuedIntegrationSerializer(many=True)
    in_flight = IntegrationSerializer(
        allow_null=True, help_text="The merge in flight, its test output so far."
    )
    recent = IntegrationSerializer(many=True, help_text="The latest merges, newest first.")
    waiting = IntegrationSerializer(
        many=True, help_text="Conflicts and test failures nothing has superseded."
    )
    head = BranchComparisonSerializer()


class IntegrationListQuery(serializers.Serializer):
    status = serializers.CharField(
        required=False, allow_blank=True, max_length=500, help_text="Statuses, comma-separated."
    )
    task = IdField(required=False, allow_null=True)

    def validate_status(self, value):
        statuses = [part.strip() for part in value.split(",") if part.strip()]
        unknown = sorted(set(statuses) - set(Integration.Status.values))
        if unknown:
            raise serializers.ValidationError(
                f"Unknown status {', '.join(unknown)}; choose from {', '.join(Integration.Status.values)}."
            )
        return statuses


class SkipInput(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=MAX_NOTE_CHARS)


class ReviewInput(serializers.Serializer):
    decision = serializers.ChoiceField(
        choices=TaskReview.Decision.choices,
        help_text="approved → merge queue; changes_requested → a follow-up run carrying the comment; "
        "rejected → back to todo (or cancelled with `cancel`).",
    )
    comment = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=MAX_MESSAGE_CHARS, trim_whitespace=True
    )
    cancel = serializers.BooleanField(default=False, help_text="With rejected: cancel the task.")

    def validate(self, attrs):
        if attrs["decision"] == TaskReview.Decision.CHANGES_REQUESTED and not attrs["comment"].strip():
            raise serializers.ValidationError(
                {"comment": ["Requesting changes needs a comment saying what."]}
            )
        if attrs["cancel"] and attrs["decision"] != TaskReview.Decision.REJECTED:
            raise serializers.ValidationError({"cancel": ["Only a rejection can cancel the task."]})
        return attrs


class TaskReviewSerializer(serializers.ModelSerializer):
    author = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    task_status = serializers.CharField(source="task.status", read_only=True)

    class Meta:
        model = TaskReview
        fields = ["id", "task", "run", "decision", "comment", "author", "created_at", "task_status"]
        read_only_fields = fields


def _valid(serializer_class, data):
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _task(request, task_id: int, minimum: str):
    """A task of a project the caller can see (else the same 404 as a missing one), then the role."""
    task = visible_tasks(request.user).select_related("project").filter(pk=task_id).first()
    if task is None:
        raise NotFound(f"No task #{task_id}.")
    require_role(request.user, task.project, minimum)
    return task


class ProjectIntegrationView(APIView):
    @extend_schema(
        summary="The project's merge queue and integration branch (viewers)",
        responses=IntegrationQueueSerializer,
    )
    def get(self, request, project_id: int):
        project = project_for(request.user, project_id, Role.VIEWER)
        return Response(IntegrationQueueSerializer(integration_selectors.queue_status(project)).data)


class ProjectIntegrationsView(GenericAPIView):
    serializer_class = IntegrationSerializer
    filter_backends: list = []  # the query is IntegrationListQuery
    queryset = Integration.objects.none()  # for the schema; requests use integration_selectors

    @extend_schema(
        summary="The project's merges, newest first (viewers)",
        responses=IntegrationSerializer(many=True),
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, description="Statuses, comma-separated."),
            OpenApiParameter("task", OpenApiTypes.INT, description="Only the merges of this task."),
        ],
    )
    def get(self, request, project_id: int):
        project = project_for(request.user, project_id, Role.VIEWER)
        query = _valid(IntegrationListQuery, request.query_params)
        qs = integration_selectors.integrations_of(project).order_by("-queued_at", "-id")
        if query.get("status"):
            qs = qs.filter(status__in=query["status"])
        if query.get("task"):
            qs = qs.filter(task_id=query["task"])
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(IntegrationSerializer(page, many=True).data)


class IntegrationDetailView(APIView):
    @extend_schema(summary="One merge (viewers)", responses=IntegrationSerializer)
    def get(self, request, project_id: int, integration_id: int):
        found = _integration(request, project_id, integration_id, Role.VIEWER)
        return Response(IntegrationSerializer(found).data)


def _integration(request, project_id: int, integration_id: int, minimum: str) -> Integration:
    project = project_for(request.user, project_id, minimum)
    return integration_selectors.integration_get(project, integration_id)


class IntegrationRetryView(APIView):
    @extend_schema(
        summary="Put a failed merge (conflict, tests failed) back in the queue (operators)",
        request=None,
        responses=IntegrationSerializer,
    )
    def post(self, request, project_id: int, integration_id: int):
        found = _integration(request, project_id, integration_id, Role.OPERATOR)
        return Response(IntegrationSerializer(integration.retry(found, actor=request.user)).data)


class IntegrationSkipView(APIView):
    @extend_schema(
        summary="Take a merge out of the queue, or give up on a failed one (operators)",
        request=SkipInput,
        responses=IntegrationSerializer,
    )
    def post(self, request, project_id: int, integration_id: int):
        found = _integration(request, project_id, integration_id, Role.OPERATOR)
        reason = _valid(SkipInput, request.data)["reason"]
        return Response(
            IntegrationSerializer(integration.skip(found, actor=request.user, reason=reason)).data
        )


class IntegrationResolveView(APIView):
    @extend_schema(
        summary="A human resolved the conflict on the task's branch: merge it again (operators)",
        request=None,
        responses=IntegrationSerializer,
    )
    def post(self, request, project_id: int, integration_id: int):
        found = _integration(request, project_id, integration_id, Role.OPERATOR)
        return Response(IntegrationSerializer(integration.resolve(found, actor=request.user)).data)


class TaskReviewView(APIView):
    @extend_schema(
        summary="Review a task's delivered work (operators): approve, request changes, reject",
        request=ReviewInput,
        responses={201: TaskReviewSerializer},
    )
    def post(self, request, task_id: int):
        task = _task(request, task_id, Role.OPERATOR)  # the role first: strangers learn nothing
        data = _valid(ReviewInput, request.data)
        review = integration.review(
            task,
            actor=request.user,
            decision=data["decision"],
            comment=data["comment"],
            cancel=data["cancel"],
        )
        return Response(TaskReviewSerializer(review).data, status=status.HTTP_201_CREATED)


class TaskPrBodyView(APIView):
    @extend_schema(
        summary="A pull-request description of the task's work, in Markdown (viewers)",
        responses=inline_serializer(
            "PrBody", {"task": serializers.IntegerField(), "markdown": serializers.CharField()}
        ),
    )
    def get(self, request, task_id: int):
        task = _task(request, task_id, Role.VIEWER)
        return Response({"task": task.pk, "markdown": integration_selectors.pr_body(task)})


P = "projects/<int:project_id>/"
I = P + "integrations/<int:integration_id>/"  # noqa: E741 - the integration's URL prefix
urlpatterns = [
    path(P + "integration/", ProjectIntegrationView.as_view(), name="project-integration"),
    path(P + "integrations/", ProjectIntegrationsView.as_view(), name="project-integrations"),
    path(I, IntegrationDetailView.as_view(), name="integration-detail"),
    path(I + "retry/", IntegrationRetryView.as_view(), name="integration-retry"),
    path(I + "skip/", IntegrationSkipView.as_view(), name="integration-skip"),
    path(I + "resolve/", IntegrationResolveView.as_view(), name="integration-resolve"),
    path("tasks/<int:task_id>/review/", TaskReviewView.as_view(), name="task-review"),
    path("tasks/<int:task_id>/pr_body/", TaskPrBodyView.as_view(), name="task-pr-body"),
]
