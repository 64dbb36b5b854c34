"""REST doors for the project snapshot and the alignment check.

    GET  /api/projects/{id}/snapshot/                  the newest snapshot (one is computed if none)
    POST /api/projects/{id}/snapshot/refresh/          compute and store one (?narrative=1: the
                                                       manager-role model adds a summary)
    POST /api/alignment/check/  {run, llm?}            check a run's change against its task's scope

Viewers read the snapshot; refreshing and checking need the operator role. A run of a project the
caller cannot see is "No run" (404) like a missing one.
"""

from __future__ import annotations

from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from autopilot.api.fields import IdField
from autopilot.errors import NotFound
from autopilot.models import Role
from autopilot.permissions import project_for, require_role
from runs import alignment, selectors, snapshot
from runs.models import ProjectSnapshot

TRUE = ("1", "true", "yes")
FALSE = ("", "0", "false", "no")


class SnapshotSerializer(serializers.ModelSerializer):
    text = serializers.SerializerMethodField(help_text="The snapshot as a few lines of plain text.")

    class Meta:
        model = ProjectSnapshot
        fields = [
            "id",
            "project",
            "created_at",
            "created_by",
            "data",
            "text",
            "narrative",
            "narrative_model",
            "narrative_error",
        ]
        read_only_fields = fields

    def get_text(self, obj) -> str:
        return snapshot.snapshot_text_from(obj.data)


class AlignmentCheckInput(serializers.Serializer):
    run = IdField(help_text="The run whose change (its branch against its start commit) is checked.")
    llm = serializers.BooleanField(
        required=False, default=False, help_text="Also ask the project's manager-role model for a judgement."
    )


class AlignmentSerializer(serializers.Serializer):
    run = serializers.IntegerField()
    verdict = serializers.ChoiceField(choices=["aligned", "warn", "block"])
    reasons = serializers.ListField(child=serializers.DictField())
    files = serializers.ListField(child=serializers.DictField())
    stats = serializers.DictField()
    mentions = serializers.DictField()
    base = serializers.CharField()
    head = serializers.CharField()
    checked_at = serializers.CharField()
    llm = serializers.DictField(required=False)


def _flag(request, name: str) -> bool:
    raw = (request.query_params.get(name) or "").strip().lower()
    if raw in TRUE:
        return True
    if raw in FALSE:
        return False
    raise serializers.ValidationError({name: [f"'{raw[:50]}' is not a yes/no value; use 1 or 0."]})


class ProjectSnapshotView(APIView):
    @extend_schema(responses=SnapshotSerializer, summary="The project's newest snapshot (computed if none).")
    def get(self, request, project_id: int):
        project = project_for(request.user, project_id, Role.VIEWER)
        return Response(SnapshotSerializer(snapshot.snapshot_latest(project)).data)


class ProjectSnapshotRefreshView(APIView):
    @extend_schema(
        request=None,
        responses={201: SnapshotSerializer},
        parameters=[
            OpenApiParameter(
                "narrative",
                OpenApiTypes.STR,
                enum=["1", "0", "true", "false", "yes", "no"],
                description="Add a narrative from the manager-role model (its cost is recorded as usage).",
            )
        ],
        summary="Compute and store a new snapshot.",
    )
    def post(self, request, project_id: int):
        project = project_for(request.user, project_id, Role.OPERATOR)
        narrative = _flag(request, "narrative")
        stored = snapshot.snapshot_refresh(project, actor=request.user, narrative=narrative)
        return Response(SnapshotSerializer(stored).data, status=status.HTTP_201_CREATED)


class AlignmentCheckView(APIView):
    @extend_schema(
        request=AlignmentCheckInput,
        responses={200: AlignmentSerializer},
        summary="Check that a run's change stays in its task's scope; the result is stored on the run.",
    )
    def post(self, request):
        data = AlignmentCheckInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        run = (
            selectors.runs_visible_to(request.user)
            .filter(pk=values["run"])
            .select_related("project", "task")
            .first()
        )
        if run is None:
            raise NotFound(f"No run '{values['run']}'.")
        require_role(request.user, run.project, Role.OPERATOR)
        result = alignment.check_run(run, llm=values["llm"])
        return Response({"run": run.pk, **result})


urlpatterns = [
    path("projects/<int:project_id>/snapshot/", ProjectSnapshotView.as_view(), name="project-snapshot"),
    path(
        "projects/<int:project_id>/snapshot/refresh/",
        ProjectSnapshotRefreshView.as_view(),
        name="project-snapshot-refresh",
    ),
    path("alignment/check/", AlignmentCheckView.as_view(), name="alignment-check"),
]
