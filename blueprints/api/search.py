"""REST doors for spec search and section summaries: validate, call the service, render."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import api_view, parser_classes
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from autopilot.api.parsers import JSONParser
from autopilot.api.permissions import ProjectRolePermission
from autopilot.input_limits import MAX_SEARCH_QUERY_CHARS
from autopilot.models import Role
from autopilot.permissions import project_for, visible_projects
from blueprints.models import SummaryJob
from blueprints.search import MAX_LIMIT, search_sections
from runs.section_summaries import summary_job_create


class SearchHitSerializer(serializers.Serializer):
    node_id = serializers.IntegerField()
    title = serializers.CharField()
    anchor = serializers.CharField()
    score = serializers.FloatField(help_text="Relevance (higher is better; not comparable across databases).")
    snippet = serializers.CharField(help_text="Plain text around the first matching word.")


class SearchResultSerializer(serializers.Serializer):
    query = serializers.CharField()
    count = serializers.IntegerField()
    results = SearchHitSerializer(many=True)


class SummarizeSerializer(serializers.Serializer):
    llm = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Summaries by the project's manager-role model (cost recorded as usage); default: "
        "extractive (no model).",
    )


class SummaryJobSerializer(serializers.ModelSerializer):
    class Meta:
        model = SummaryJob
        fields = [
            "id",
            "project",
            "kind",
            "model",
            "status",
            "stage",
            "progress",
            "counts",
            "error",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


@extend_schema(
    parameters=[
        OpenApiParameter(
            "q",
            str,
            required=True,
            description=f"Words to find (at most {MAX_SEARCH_QUERY_CHARS:,} characters).",
        ),
        OpenApiParameter(
            "limit", int, description=f"At most this many sections (1–{MAX_LIMIT}, default 10)."
        ),
    ],
    responses=SearchResultSerializer,
    summary="Full-text search over the active blueprint's current sections, best first.",
)
@api_view(["GET"])
def project_search(request, project_id: int):
    project = project_for(request.user, project_id)
    query = request.query_params.get("q", "")
    hits = search_sections(project, query, limit=request.query_params.get("limit", 10))
    return Response({"query": query, "count": len(hits), "results": [hit.as_dict() for hit in hits]})


@extend_schema(
    request=SummarizeSerializer,
    responses={202: SummaryJobSerializer},
    summary="Start a job summarizing the current plan tree's sections (those without a summary for their "
    "content); follow it at /api/summary_jobs/{id}/.",
)
@api_view(["POST"])
@parser_classes([JSONParser])
def project_summaries(request, project_id: int):
    project = project_for(request.user, project_id, Role.OPERATOR)
    data = SummarizeSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    job = summary_job_create(project=project, llm=data.validated_data["llm"], actor=request.user)
    body = SummaryJobSerializer(job).data
    body["url"] = f"/api/summary_jobs/{job.pk}/"
    return Response(body, status=status.HTTP_202_ACCEPTED)


class SummaryJobViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """A summaries job: its status, progress and counts."""

    serializer_class = SummaryJobSerializer
    permission_classes = [IsAuthenticated, ProjectRolePermission]

    def get_queryset(self):
        return SummaryJob.objects.filter(project__in=visible_projects(self.request.user))
