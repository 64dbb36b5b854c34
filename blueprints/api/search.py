"""REST doors for spec search and section summaries: validate, call the service, render."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view, parser_classes
from rest_framework.response import Response

from autopilot.api.parsers import JSONParser
from autopilot.errors import ApplicationError
from autopilot.input_limits import MAX_SEARCH_QUERY_CHARS
from autopilot.models import Role
from autopilot.permissions import project_for
from blueprints.search import MAX_LIMIT, search_sections
from blueprints.summaries import summarize_project


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
        required=False, default=False, help_text="Not yet: summaries are extractive (no model)."
    )


class SummarizeResultSerializer(serializers.Serializer):
    sections = serializers.IntegerField(help_text="Nodes in the current plan tree.")
    summarized = serializers.IntegerField(help_text="Summaries written now (content without one).")
    cached = serializers.IntegerField(help_text="Nodes whose summary for their content was kept.")


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
    responses=SummarizeResultSerializer,
    summary="Summarize the current plan tree's sections (only those whose content has no summary yet).",
)
@api_view(["POST"])
@parser_classes([JSONParser])
def project_summaries(request, project_id: int):
    project = project_for(request.user, project_id, Role.OPERATOR)
    data = SummarizeSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    if data.validated_data["llm"]:
        raise ApplicationError("LLM summaries are not available yet; summaries are extractive (llm: false).")
    return Response(summarize_project(project))
