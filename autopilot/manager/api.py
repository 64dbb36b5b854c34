"""REST doors of the manager. Each view: check the role, call one service or selector, render."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from autopilot.api.fields import IdField, query_id
from autopilot.cli_support import to_jsonable
from autopilot.errors import NotFound, PermissionDenied
from autopilot.manager import explain, metrics, proposals, queue
from autopilot.manager.tick import tick_project
from autopilot.models import Project, Proposal, Role
from autopilot.permissions import has_role, project_for, require_role, visible_projects


def _project(request, pk: int, minimum: str = Role.VIEWER) -> Project:
    return project_for(request.user, pk, minimum)


class ProposalSerializer(serializers.ModelSerializer):
    task_title = serializers.CharField(source="task.title", read_only=True)

    class Meta:
        model = Proposal
        fields = [
            "id", "project", "task", "task_title", "status", "role", "agent_backend", "model", "score", "reason",
            "run", "decided_by", "decided_at", "created_at",
        ]
        read_only_fields = fields


class ManagerPlanView(APIView):
    @extend_schema(summary="What the next tick would start, and why not for every other ready task", responses=OpenApiTypes.OBJECT)
    def get(self, request, pk: int):
        return Response(to_jsonable(explain.manager_plan(_project(request, pk))))


class LearningMetricsView(APIView):
    @extend_schema(summary="Cycle time, difficulty, fragile areas, plan deviation rate, cost per task", responses=OpenApiTypes.OBJECT)
    def get(self, request, pk: int):
        return Response(to_jsonable(metrics.learning_metrics(_project(request, pk))))


class TickView(APIView):
    @extend_schema(summary="Run one manager tick of this project now", request=None, responses=OpenApiTypes.OBJECT)
    def post(self, request, pk: int):
        project = _project(request, pk, Role.OPERATOR)
        report = tick_project(project, reason="api", actor=request.user)
        return Response(to_jsonable(report.as_dict()))


class RefinePlanView(APIView):
    @extend_schema(summary="Re-rank learned priorities from the learned signals", request=None, responses=OpenApiTypes.OBJECT)
    def post(self, request, pk: int):
        project = _project(request, pk, Role.OPERATOR)
        return Response(to_jsonable(metrics.refine_plan(project=project, actor=request.user)))


class ProposalListQuery(serializers.Serializer):
    status = serializers.ChoiceField(choices=Proposal.Status.choices, required=False, allow_blank=True)


class ProposalDismissInput(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)


class QueueClearInput(serializers.Serializer):
    project = IdField(required=False, allow_null=True, default=None, help_text="Only this project's runs.")


class ProjectProposalsView(APIView):
    @extend_schema(summary="The manager's proposals (suggest mode); ?status=pending|accepted|dismissed|expired",
                   parameters=[OpenApiParameter("status", OpenApiTypes.STR, enum=Proposal.Status.values)],
                   responses=ProposalSerializer(many=True))
    def get(self, request, pk: int):
        project = _project(request, pk)
        query = ProposalListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = proposals.proposals_for(project, status=query.validated_data.get("status") or None)[:500]
        return Response(ProposalSerializer(rows, many=True).data)


class ProposalDecisionView(APIView):
    decision = ""

    @extend_schema(summary="Accept (201: the run is started) or dismiss (200) a proposal", request=None,
                   responses={200: ProposalSerializer, 201: ProposalSerializer})
    def post(self, request, pk: int):
        # Proposals of visible projects only: another project's is a 404 like a missing one.
        visible = Proposal.objects.filter(project__in=visible_projects(request.user))
        proposal = get_object_or_404(visible.select_related("project"), pk=pk)
        require_role(request.user, proposal.project, Role.OPERATOR)
        if self.decision == "accept":
            run = proposals.proposal_accept(proposal=proposal, actor=request.user)
            proposal.refresh_from_db()
            return Response({**ProposalSerializer(proposal).data, "run": run.pk}, status=status.HTTP_201_CREATED)
        note = ProposalDismissInput(data=request.data)
        note.is_valid(raise_exception=True)
        proposals.proposal_dismiss(proposal=proposal, actor=request.user, note=note.validated_data["note"])
        proposal.refresh_from_db()
        return Response(ProposalSerializer(proposal).data)


class QueueView(APIView):
    @extend_schema(summary="The global run queue with positions (runs of projects you can see)", responses=OpenApiTypes.OBJECT)
    def get(self, request):
        projects = None if request.user.is_superuser else visible_projects(request.user)
        return Response(to_jsonable(queue.queue_status(projects=projects)))


class QueueClearView(APIView):
    @extend_schema(summary="Cancel queued runs (owners: the runs of projects you own; ?project=ID narrows)",
                   request=QueueClearInput, responses=OpenApiTypes.OBJECT,
                   parameters=[OpenApiParameter("project", OpenApiTypes.INT, description="Only this project's runs.")])
    def post(self, request):
        projects = visible_projects(request.user)
        project_id = query_id(request, "project")
        if project_id is None:
            body = QueueClearInput(data=request.data)
            body.is_valid(raise_exception=True)
            project_id = body.validated_data["project"]
        if project_id:
            projects = projects.filter(pk=project_id)
            if not projects.exists():
                raise NotFound(f"Project '{project_id}' was not found.")
        owned = [p.pk for p in projects if has_role(request.user, p, Role.OWNER)]
        if not owned:
            raise PermissionDenied("Clearing the queue needs the owner role on at least one project.")
        cancelled = queue.queue_clear(actor=request.user, projects=Project.objects.filter(pk__in=owned))
        return Response({"cancelled": cancelled, "count": len(cancelled)})
