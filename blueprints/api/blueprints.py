"""REST doors for blueprints, their plan nodes and ingestion jobs: validate, call a service, render."""

from __future__ import annotations

from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action, api_view, parser_classes
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from autopilot.api.parsers import JSONParser
from autopilot.api.permissions import ProjectRolePermission
from autopilot.errors import ApplicationError, NotFound
from autopilot.input_limits import MAX_DESCRIPTION_CHARS, MAX_NOTE_CHARS
from autopilot.models import Role
from autopilot.permissions import project_for, visible_projects
from blueprints.ingestion import (
    blueprint_update,
    ingest_blueprint,
    ingestion_job_create,
    ingestion_job_retry,
    plan_node_update,
    regenerate_plan,
)
from blueprints.models import Blueprint, IngestionJob, PlanNode
from blueprints.pinning import plan_node_pin
from blueprints.selectors import placed, version_nodes
from blueprints.summaries import summary_for


class BlueprintSerializer(serializers.ModelSerializer):
    class Meta:
        model = Blueprint
        fields = [
            "id",
            "project",
            "title",
            "version",
            "parent",
            "status",
            "format",
            "content_hash",
            "size_bytes",
            "counts",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class BlueprintDetailSerializer(BlueprintSerializer):
    class Meta(BlueprintSerializer.Meta):
        fields = [*BlueprintSerializer.Meta.fields, "diff"]
        read_only_fields = fields


class PlanNodeSerializer(serializers.ModelSerializer):
    class Meta:
        model = PlanNode
        fields = [
            "id",
            "project",
            "blueprint",
            "parent",
            "kind",
            "origin",
            "level",
            "depth",
            "title",
            "anchor",
            "order",
            "start",
            "end",
            "content_hash",
            "checked",
            "status",
            "change",
            "priority",
            "risk",
            "summary",
            "pinned",
            "difficulty",
            "failure_count",
            "rework_count",
            "archived_at",
            "updated_at",
        ]
        read_only_fields = fields


class PlanNodeDetailSerializer(PlanNodeSerializer):
    section_summary = serializers.SerializerMethodField(
        help_text="A summary of the section's own text (blueprints.summaries; extractive unless a model "
        "wrote one); empty for a node not in the current tree."
    )

    class Meta(PlanNodeSerializer.Meta):
        fields = [*PlanNodeSerializer.Meta.fields, "section_summary"]
        read_only_fields = fields

    def get_section_summary(self, node) -> str:
        return summary_for(node)


class PlanNodeUpdateSerializer(serializers.Serializer):
    priority = serializers.IntegerField(required=False, min_value=0, max_value=5)
    risk = serializers.ChoiceField(choices=PlanNode.Risk.choices, required=False)
    summary = serializers.CharField(required=False, allow_blank=True, max_length=MAX_DESCRIPTION_CHARS)
    status = serializers.ChoiceField(choices=PlanNode.Status.choices, required=False)
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=MAX_NOTE_CHARS)
    pinned = serializers.BooleanField(
        required=False,
        allow_null=True,
        help_text="In every agent's context: true, false (never), null (decided by the heading's name). "
        "Needs the owner role.",
    )


class IngestionJobSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(
        source="blueprint.version", read_only=True, default=None, allow_null=True
    )

    class Meta:
        model = IngestionJob
        fields = [
            "id",
            "project",
            "blueprint",
            "version",
            "title",
            "status",
            "stage",
            "progress",
            "counts",
            "diff",
            "error",
            "elapsed_s",
            "size_bytes",
            "generate_tasks",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class IngestSerializer(serializers.Serializer):
    title = serializers.CharField(required=False, allow_blank=True, default="", max_length=300)
    text = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    file = serializers.FileField(required=False)
    generate_tasks = serializers.BooleanField(required=False, default=True)


class BlueprintUpdateSerializer(serializers.Serializer):
    title = serializers.CharField(required=False, max_length=300)
    status = serializers.ChoiceField(choices=Blueprint.Status.choices, required=False)


def ingest_response(result) -> dict:
    return {**result.as_dict(), "status": result.blueprint.status, "title": result.blueprint.title}


@extend_schema(
    methods=["GET"],
    responses=BlueprintSerializer(many=True),
    summary="A project's blueprint versions, newest first.",
)
@extend_schema(
    methods=["POST"],
    request=IngestSerializer,
    responses={201: OpenApiTypes.OBJECT, 202: IngestionJobSerializer},
    parameters=[
        OpenApiParameter("async", bool, description="Queue an IngestionJob and answer 202 with its id.")
    ],
    summary="Ingest a new version (JSON {title, text} or a multipart file upload).",
)
@api_view(["GET", "POST"])
@parser_classes([JSONParser, MultiPartParser, FormParser])
def project_blueprints(request, project_id: int):
    if request.method == "GET":
        project = project_for(request.user, project_id)
        versions = Blueprint.objects.filter(project=project).defer("diff").order_by("-version")
        return Response(BlueprintSerializer(versions, many=True).data)
    project = project_for(request.user, project_id, Role.OPERATOR)
    text, title, generate_tasks = _ingest_input(request)
    if request.query_params.get("async") in ("1", "true", "yes"):
        return _queue_job(request, project, text, title, generate_tasks)
    result = ingest_blueprint(
        project=project, text=text, title=title, actor=request.user, generate_tasks=generate_tasks
    )
    return Response(ingest_response(result), status=status.HTTP_201_CREATED)


def _ingest_input(request) -> tuple[str | bytes, str, bool]:
    """(text, title, generate_tasks) of an ingest request: JSON/form `text` or a `file` upload."""
    data = IngestSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    values = data.validated_data
    upload = values.get("file")
    if upload is not None and values.get("text"):
        raise ApplicationError("Give either 'text' or a 'file', not both.")
    if upload is not None:
        if upload.size > _max_bytes():
            raise ApplicationError(
                f"The blueprint is too large: {upload.size:,} bytes, "
                f"over the limit of {_max_bytes():,} bytes "
                "(AUTOPILOT_MAX_BLUEPRINT_BYTES)."
            )
        text: str | bytes = upload.read()
        title = values["title"] or upload.name.rsplit("/", 1)[-1]
    elif "text" in values:
        text, title = values["text"], values["title"]
    else:
        raise ApplicationError("Give the blueprint as 'text' (JSON or form field) or as a 'file' upload.")
    return text, title, values["generate_tasks"]


def _queue_job(request, project, text, title: str, generate_tasks: bool) -> Response:
    job = ingestion_job_create(
        project=project, text=text, title=title, actor=request.user, generate_tasks=generate_tasks
    )
    body = IngestionJobSerializer(job).data
    body["url"] = f"/api/projects/{project.pk}/ingestion_jobs/{job.pk}/"
    return Response(body, status=status.HTTP_202_ACCEPTED)


def _max_bytes() -> int:
    from django.conf import settings

    return settings.AUTOPILOT_MAX_BLUEPRINT_BYTES


class BlueprintViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """One blueprint version. PATCH renames it, or (status=active) makes it the active version again."""

    serializer_class = BlueprintDetailSerializer
    permission_classes = [IsAuthenticated, ProjectRolePermission]

    def get_queryset(self):
        return Blueprint.objects.filter(project__in=visible_projects(self.request.user))

    @extend_schema(request=BlueprintUpdateSerializer, responses=BlueprintDetailSerializer)
    def partial_update(self, request, pk=None):
        blueprint = self.get_object()
        data = BlueprintUpdateSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        extra = set(request.data) - set(BlueprintUpdateSerializer().fields)
        if extra:
            raise ApplicationError(
                f"Cannot edit {', '.join(sorted(extra))} of a blueprint; editable: title, status."
            )
        blueprint, result = blueprint_update(blueprint=blueprint, actor=request.user, **data.validated_data)
        body = BlueprintDetailSerializer(blueprint).data
        if result is not None:
            body["reconciled"] = {"counts": result.counts, "diff": result.diff}
        return Response(body)

    @extend_schema(request=None, responses=OpenApiTypes.OBJECT)
    @action(detail=True, methods=["post"])
    def generate_plan(self, request, pk=None):
        """Re-parse this version's text into the plan tree (idempotent); the version becomes active."""
        blueprint = self.get_object()
        result = regenerate_plan(blueprint=blueprint, actor=request.user)
        return Response(ingest_response(result))

    @extend_schema(responses=OpenApiTypes.OBJECT)
    @action(detail=True, methods=["get"])
    def diff(self, request, pk=None):
        """What this version added, changed, moved and removed against its parent."""
        blueprint = self.get_object()
        return Response(
            {
                "blueprint": blueprint.pk,
                "version": blueprint.version,
                "counts": blueprint.counts,
                **blueprint.diff,
            }
        )

    @extend_schema(
        responses=PlanNodeSerializer(many=True),
        parameters=[OpenApiParameter("archived", bool, description="Include archived (removed) nodes.")],
    )
    @action(detail=True, methods=["get"], pagination_class=None)
    def nodes(self, request, pk=None):
        """The plan nodes of this version, flat, in document order, with this version's offsets into its text
        (the whole current tree for the active version; for an older one, its tree then)."""
        blueprint = self.get_object()
        archived = request.query_params.get("archived") in ("1", "true", "yes")
        return Response(PlanNodeSerializer(version_nodes(blueprint, archived=archived), many=True).data)


class PlanNodeViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """A plan node: PATCH priority, risk, summary, status (through the node's transitions), or pinned
    (owner: blueprints.pinning)."""

    serializer_class = PlanNodeSerializer
    permission_classes = [IsAuthenticated, ProjectRolePermission]

    def get_queryset(self):
        return PlanNode.objects.filter(project__in=visible_projects(self.request.user))

    def get_object(self):
        return placed(super().get_object())  # where the active version has it

    @extend_schema(responses=PlanNodeDetailSerializer)
    def retrieve(self, request, pk=None):
        return Response(PlanNodeDetailSerializer(self.get_object()).data)

    @extend_schema(request=PlanNodeUpdateSerializer, responses=PlanNodeSerializer)
    def partial_update(self, request, pk=None):
        node = self.get_object()
        data = PlanNodeUpdateSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        extra = set(request.data) - set(PlanNodeUpdateSerializer().fields)
        if extra:
            raise ApplicationError(
                f"Cannot edit {', '.join(sorted(extra))} of a plan node; "
                "editable: priority, risk, summary, status, pinned."
            )
        changes = dict(data.validated_data)
        with transaction.atomic():  # the pin's owner check comes first: nothing is half-written
            if "pinned" in changes:
                node = plan_node_pin(node=node, pinned=changes.pop("pinned"), actor=request.user)
            node = plan_node_update(node=node, actor=request.user, **changes)
        return Response(PlanNodeSerializer(placed(node)).data)


class IngestionJobViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = IngestionJobSerializer
    permission_classes = [IsAuthenticated, ProjectRolePermission]

    def get_queryset(self):
        return (
            IngestionJob.objects.filter(project__in=visible_projects(self.request.user))
            .select_related("blueprint")
            .defer("source_text")
        )

    @extend_schema(request=None, responses=IngestionJobSerializer)
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        """Queue a failed job again (its text is kept until it succeeds)."""
        job = ingestion_job_retry(job=self.get_object(), actor=request.user)
        return Response(IngestionJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class IngestionJobListQuery(serializers.Serializer):
    status = serializers.ChoiceField(choices=IngestionJob.Status.choices, required=False)


class ProjectIngestionJobsView(mixins.ListModelMixin, GenericAPIView):
    """GET: the project's ingestion jobs, newest first (viewers; ?status=). POST: start one (operators):
    the same input and service as POST /api/projects/{id}/blueprints/?async=1, answered 202 with the job."""

    serializer_class = IngestionJobSerializer
    parser_classes = [JSONParser, MultiPartParser, FormParser]
    filter_backends: list = []  # the query is IngestionJobListQuery

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return IngestionJob.objects.none()
        project = project_for(self.request.user, self.kwargs["project_id"], Role.VIEWER)
        query = IngestionJobListQuery(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        qs = IngestionJob.objects.filter(project=project).select_related("blueprint").defer("source_text")
        if "status" in query.validated_data:
            qs = qs.filter(status=query.validated_data["status"])
        return qs.order_by("-created_at", "-id")

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "status",
                OpenApiTypes.STR,
                enum=IngestionJob.Status.values,
                description="Only jobs in this status.",
            )
        ],
        summary="A project's ingestion jobs, newest first.",
    )
    def get(self, request, project_id: int):
        return self.list(request)

    @extend_schema(
        request=IngestSerializer,
        responses={202: IngestionJobSerializer},
        summary="Start an ingestion job (JSON {title, text} or a multipart file upload).",
    )
    def post(self, request, project_id: int):
        project = project_for(request.user, project_id, Role.OPERATOR)
        text, title, generate_tasks = _ingest_input(request)
        return _queue_job(request, project, text, title, generate_tasks)


@extend_schema(responses=IngestionJobSerializer, summary="One ingestion job of the project.")
@api_view(["GET"])
def project_ingestion_job(request, project_id: int, job_id: int):
    project = project_for(request.user, project_id, Role.VIEWER)
    job = (
        IngestionJob.objects.filter(project=project, pk=job_id)
        .select_related("blueprint")
        .defer("source_text")
        .first()
    )
    if job is None:
        raise NotFound(f"No ingestion job '{job_id}' in project '{project.name}'.")
    return Response(IngestionJobSerializer(job).data)
