"""REST doors for trajectories: export, import, analysis and comparison of runs.

    GET  /api/runs/{id}/export/?format=json|rlog   the trajectory (redacted), as a download
         …?format=cast                              the terminal recording (asciicast v2, redacted)
    POST /api/runs/import/                          {project, trajectory} → a new finished run (201)
    GET  /api/runs/{id}/analysis/                   cost, tokens, duration, turns, tool use, files, errors
    GET  /api/runs/compare/?a=ID&b=ID               two runs side by side, steps aligned

Viewers of a run's project may read; importing needs the operator role on the target project.
These paths are listed before the run router so "import"/"compare" are not taken for run ids.
"""

from __future__ import annotations

from django.urls import path
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from autopilot.api.fields import JSONField, query_id
from autopilot.api.parsers import JSONTooDeep, loads_bounded
from autopilot.errors import ApplicationError, NotFound
from autopilot.models import Role
from autopilot.permissions import require_role
from autopilot.services import project_get
from runs import interactive, selectors, trajectory


class RlogRenderer(BaseRenderer):
    """`?format=rlog`: the human-readable run log as text/plain."""

    media_type = "text/plain"
    format = "rlog"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, str):
            return data.encode(self.charset)
        # Errors (dicts) still read as text.
        detail = data.get("detail") if isinstance(data, dict) else data
        return str(detail).encode(self.charset)


class CastRenderer(RlogRenderer):
    """`?format=cast`: an interactive session's (or take-over's) terminal recording, asciicast v2."""

    media_type = "application/x-asciicast"
    format = "cast"


def _readable_run(request, run_id):
    """A run of a project the caller can see; any other run is "No run" exactly like a missing one."""
    run = selectors.runs_visible_to(request.user).filter(pk=run_id).first()
    if run is None:
        raise NotFound(f"No run '{run_id}'.")
    return run


class RunExportView(APIView):
    renderer_classes = [JSONRenderer, RlogRenderer, CastRenderer]

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "format",
                str,
                enum=["json", "rlog", "cast"],
                description="json (default), rlog, or cast (the terminal recording, asciicast v2)",
            )
        ],
        responses={200: dict},
    )
    def get(self, request, pk: int):
        run = _readable_run(request, pk)
        fmt = getattr(request.accepted_renderer, "format", "json")
        if fmt == "cast":
            text = interactive.recording_text(run)
            if not text:
                raise NotFound(f"Run #{run.pk} has no terminal recording.")
            response = Response(text)
            response["Content-Disposition"] = f'attachment; filename="run-{run.pk}.cast"'
        elif fmt == "rlog":
            response = Response(trajectory.export_rlog(run))
            response["Content-Disposition"] = f'attachment; filename="run-{run.pk}.rlog"'
        else:
            response = Response(trajectory.export_run(run))
            response["Content-Disposition"] = f'attachment; filename="run-{run.pk}.json"'
        return response


class ImportInput(serializers.Serializer):
    project = serializers.CharField(help_text="Target project: id, slug or name.")
    trajectory = JSONField(help_text="An exported trajectory (object, or its JSON text).")


class RunImportView(APIView):
    @extend_schema(request=ImportInput, responses={201: dict})
    def post(self, request):
        data = ImportInput(data=request.data)
        if not data.is_valid():
            raise ApplicationError(
                "Invalid import: "
                + "; ".join(
                    f"{field}: {' '.join(str(e) for e in errors)}" for field, errors in data.errors.items()
                )
            )
        try:
            project = project_get(data.validated_data["project"])
            require_role(request.user, project, Role.OPERATOR)
        except NotFound:
            # The same answer whether the project is missing or only not yours.
            raise NotFound(
                f"No project '{data.validated_data['project']}' (give its id, slug or name)."
            ) from None
        raw = data.validated_data["trajectory"]
        if isinstance(raw, (str, bytes)):
            try:
                raw = loads_bounded(raw)
            except JSONTooDeep as exc:
                raise ApplicationError(f"Invalid import: trajectory: {exc}") from None
            except ValueError:
                pass  # not JSON: import_run says so
        run = trajectory.import_run(project=project, raw=raw, actor=request.user)
        return Response(selectors.run_to_dict(run), status=status.HTTP_201_CREATED)


class RunAnalysisView(APIView):
    @extend_schema(responses={200: dict})
    def get(self, request, pk: int):
        return Response(trajectory.analyze(_readable_run(request, pk)))


class RunCompareView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("a", int, required=True), OpenApiParameter("b", int, required=True)],
        responses={200: dict},
    )
    def get(self, request):
        if not request.query_params.get("a") or not request.query_params.get("b"):
            raise ApplicationError("Compare needs two runs: ?a=RUN_ID&b=RUN_ID.")
        a, b = query_id(request, "a"), query_id(request, "b")
        return Response(trajectory.compare(_readable_run(request, a), _readable_run(request, b)))


urlpatterns = [
    path("runs/import/", RunImportView.as_view(), name="run-import"),
    path("runs/compare/", RunCompareView.as_view(), name="run-compare"),
    path("runs/<int:pk>/export/", RunExportView.as_view(), name="run-export"),
    path("runs/<int:pk>/analysis/", RunAnalysisView.as_view(), name="run-analysis"),
]
