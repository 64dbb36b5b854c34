"""REST doors for tasks and dependencies: thin — validate, call one service or selector, render."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action, api_view
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from autopilot.api.fields import IdField
from autopilot.api.permissions import ProjectRolePermission
from autopilot.api.schema import ErrorSerializer
from autopilot.errors import ApplicationError, NotFound
from autopilot.input_limits import MAX_NOTE_CHARS, MAX_TASK_BODY_CHARS, MAX_TITLE_CHARS
from autopilot.models import Role
from autopilot.permissions import project_for, require_role, visible_projects
from blueprints import selectors, services
from blueprints.filtersets import DependencyFilterSet, TaskFilterSet
from blueprints.models import Blueprint, PlanNode, Task, TaskDependency


class TaskSerializer(serializers.ModelSerializer):
    depends_on = serializers.SerializerMethodField()

    class Meta:
        model = Task
        fields = [
            "id",
            "project",
            "plan_node",
            "title",
            "body",
            "kind",
            "status",
            "priority",
            "complexity",
            "learned_priority",
            "plan_order",
            "attempts",
            "rework_count",
            "needs_review",
            "removed_from_spec",
            "source_key",
            "depends_on",
            "created_at",
            "updated_at",
            "started_at",
            "completed_at",
        ]
        read_only_fields = fields

    def get_depends_on(self, task) -> list[int]:
        cache = getattr(task, "_prefetched_objects_cache", {})
        if "dependency_links" in cache:
            return [d.depends_on_id for d in cache["dependency_links"]]
        return list(task.dependency_links.values_list("depends_on_id", flat=True))


class TaskCreateSerializer(serializers.Serializer):
    project = IdField()
    title = serializers.CharField(max_length=MAX_TITLE_CHARS)
    body = serializers.CharField(required=False, allow_blank=True, default="", max_length=MAX_TASK_BODY_CHARS)
    priority = serializers.IntegerField(required=False, default=2)
    complexity = serializers.IntegerField(required=False, default=3)
    plan_node = IdField(required=False, allow_null=True, default=None)


class TaskUpdateSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=MAX_TITLE_CHARS, required=False)
    body = serializers.CharField(required=False, allow_blank=True, max_length=MAX_TASK_BODY_CHARS)
    priority = serializers.IntegerField(required=False)
    complexity = serializers.IntegerField(required=False)
    plan_node = IdField(required=False, allow_null=True)


class TransitionSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Task.Status.choices)
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=MAX_NOTE_CHARS)


class DependencySerializer(serializers.ModelSerializer):
    task_title = serializers.CharField(source="task.title", read_only=True)
    depends_on_title = serializers.CharField(source="depends_on.title", read_only=True)
    depends_on_status = serializers.CharField(source="depends_on.status", read_only=True)

    class Meta:
        model = TaskDependency
        fields = [
            "id",
            "task",
            "depends_on",
            "source",
            "task_title",
            "depends_on_title",
            "depends_on_status",
            "created_at",
        ]
        read_only_fields = ["id", "source", "created_at"]


class DependencyCreateSerializer(serializers.Serializer):
    task = IdField()
    depends_on = IdField()


class GenerationResultSerializer(serializers.Serializer):
    tasks_created = serializers.IntegerField()
    dependencies_created = serializers.IntegerField()
    tasks_total = serializers.IntegerField()
    milestones_created = serializers.IntegerField()
    dependencies_removed = serializers.IntegerField()
    milestones_removed = serializers.IntegerField()
    unresolved = serializers.ListField(
        child=serializers.DictField(), help_text="References the generator did not understand."
    )


class NextTaskSerializer(serializers.Serializer):
    task = TaskSerializer(allow_null=True)
    reason = serializers.CharField()


class ReadyTasksSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    results = TaskSerializer(many=True)


class DependencyViewSerializer(serializers.Serializer):
    task = serializers.IntegerField()
    ready = serializers.BooleanField()
    upstream = DependencySerializer(many=True)
    downstream = DependencySerializer(many=True)


class TaskViewSet(viewsets.ModelViewSet):
    """Tasks of the projects you are a member of. Status changes go through `transition/`."""

    serializer_class = TaskSerializer
    permission_classes = [IsAuthenticated, ProjectRolePermission]
    filterset_class = TaskFilterSet
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return (
            selectors.visible_tasks(self.request.user)
            .select_related("project")
            .prefetch_related("dependency_links")
            .order_by("project_id", "plan_order", "id")
        )

    @extend_schema(request=TaskCreateSerializer, responses=TaskSerializer)
    def create(self, request, *args, **kwargs):
        data = TaskCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        project = project_for(request.user, values.pop("project"), Role.OPERATOR)
        task = services.task_create(project=project, actor=request.user, **values)
        return Response(TaskSerializer(task).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=TaskUpdateSerializer, responses=TaskSerializer)
    def partial_update(self, request, *args, **kwargs):
        task = self.get_object()
        data = TaskUpdateSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        extra = set(request.data) - set(TaskUpdateSerializer().fields)
        if extra:
            hint = " (use POST /api/tasks/{id}/transition/ for the status)" if "status" in extra else ""
            raise ApplicationError(f"Cannot edit {', '.join(sorted(extra))}{hint}.")
        task = services.task_update(task=task, actor=request.user, **data.validated_data)
        return Response(TaskSerializer(task).data)

    def update(self, request, *args, **kwargs):
        if not kwargs.get("partial"):
            return self.partial_update(request, *args, **kwargs)
        return super().update(request, *args, **kwargs)

    def destroy(self, request, *args, **kwargs):
        services.task_delete(task=self.get_object(), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=TransitionSerializer, responses=TaskSerializer)
    @action(detail=True, methods=["post"])
    def transition(self, request, pk=None):
        task = self.get_object()
        data = TransitionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        task = services.task_transition(
            task=task,
            to=data.validated_data["status"],
            actor=request.user,
            reason=data.validated_data["reason"],
        )
        return Response(TaskSerializer(task).data)

    @extend_schema(responses=DependencyViewSerializer)
    @action(detail=True, methods=["get"])
    def dependencies(self, request, pk=None):
        view = selectors.dependency_view(self.get_object())
        return Response(
            {
                "task": view.task.pk,
                "ready": view.is_ready,
                "upstream": DependencySerializer(view.upstream, many=True).data,
                "downstream": DependencySerializer(view.downstream, many=True).data,
            }
        )


class DependencyViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """`task` depends on `depends_on`. Same project, no self-dependency, no cycle (the error names it)."""

    serializer_class = DependencySerializer
    permission_classes = [IsAuthenticated, ProjectRolePermission]
    filterset_class = DependencyFilterSet

    def get_queryset(self):
        return (
            TaskDependency.objects.filter(task__project__in=visible_projects(self.request.user))
            .select_related("task__project", "depends_on")
            .order_by("task_id", "depends_on_id")
        )

    @extend_schema(request=DependencyCreateSerializer, responses=DependencySerializer)
    def create(self, request, *args, **kwargs):
        data = DependencyCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        tasks = selectors.visible_tasks(request.user).select_related("project")
        task = tasks.filter(pk=data.validated_data["task"]).first()
        depends_on = tasks.filter(pk=data.validated_data["depends_on"]).first()
        if task is None or depends_on is None:
            missing = data.validated_data["task"] if task is None else data.validated_data["depends_on"]
            raise NotFound(f"Task {missing} was not found.")
        require_role(request.user, task.project, Role.OPERATOR)
        dependency = services.dependency_add(task=task, depends_on=depends_on, actor=request.user)
        dependency = self.get_queryset().get(pk=dependency.pk)
        return Response(DependencySerializer(dependency).data, status=status.HTTP_201_CREATED)

    def destroy(self, request, *args, **kwargs):
        services.dependency_remove(dependency=self.get_object(), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(responses=ReadyTasksSerializer)
@api_view(["GET"])
def project_ready_tasks(request, project_id: int):
    project = project_for(request.user, project_id)
    tasks = list(selectors.ready_tasks(project).prefetch_related("dependency_links")[:500])
    return Response({"count": len(tasks), "results": TaskSerializer(tasks, many=True).data})


@extend_schema(
    responses={
        200: NextTaskSerializer,
        404: OpenApiResponse(
            ErrorSerializer,
            description="No such project, or none of its tasks is ready: `detail` says "
            "why (with `task`: null and `reason`).",
        ),
    },
    description="The single best ready task and why; 404 with the reason when none is ready.",
)
@api_view(["GET"])
def project_next_task(request, project_id: int):
    project = project_for(request.user, project_id)
    task, reason = selectors.next_task(project)
    if task is None:
        return Response({"task": None, "detail": reason, "reason": reason}, status=status.HTTP_404_NOT_FOUND)
    return Response({"task": TaskSerializer(task).data, "reason": reason})


@extend_schema(
    request=None,
    responses=GenerationResultSerializer,
    description="Generate the tasks of a plan node's subtree (idempotent).",
)
@api_view(["POST"])
def plan_node_generate_tasks(request, node_id: int):
    # Only nodes of visible projects: another project's node is a 404 like a missing one.
    nodes = PlanNode.objects.filter(project__in=visible_projects(request.user))
    node = get_object_or_404(nodes.select_related("blueprint", "project"), pk=node_id)
    project_for(request.user, node.project_id, Role.OPERATOR)
    result = services.generate_for_node(node=node, actor=request.user)
    return Response(result.as_dict())


@extend_schema(
    request=None,
    responses=GenerationResultSerializer,
    description="Generate every task and dependency of a blueprint (idempotent).",
)
@api_view(["POST"])
def blueprint_generate_all_tasks(request, blueprint_id: int):
    blueprints = Blueprint.objects.filter(project__in=visible_projects(request.user))
    blueprint = get_object_or_404(blueprints.select_related("project"), pk=blueprint_id)
    project_for(request.user, blueprint.project_id, Role.OPERATOR)
    result = services.generate_for_blueprint(blueprint=blueprint, actor=request.user)
    return Response(result.as_dict())
