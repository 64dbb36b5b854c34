"""REST doors of the manager. Each view: check the role, call one service or selector, render."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from autopilot.cli_support import to_jsonable
from autopilot.errors import NotFound, PermissionDenied
from autopilot.manager import explain, metrics, proposals, queue
from autopilot.manager.models import Proposal
from autopilot.manager.tick import tick_project
from autopilot.models import Project, Role
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


class ProjectProposalsView(APIView):
    @extend_schema(summary="The manager's proposals (suggest mode); ?status=pending|accepted|dismissed|expired",
                   responses=ProposalSerializer(many=True))
    def get(self, request, pk: int):
        project = _project(request, pk)
        rows = proposals.proposals_for(project, status=request.query_params.get("status") or None)[:500]
        return Response(ProposalSerializer(rows, many=True).data)


class ProposalDecisionView(APIView):
    decision = ""

    @extend_schema(summary="Accept (start the run) or dismiss a proposal", request=None, responses=ProposalSerializer)
    def post(self, request, pk: int):
        proposal = get_object_or_404(Proposal.objects.select_related("project"), pk=pk)
        require_role(request.user, proposal.project, Role.OPERATOR)
        if self.decision == "accept":
            run = proposals.proposal_accept(proposal=proposal, actor=request.user)
            proposal.refresh_from_db()
            return Response({**ProposalSerializer(proposal).data, "run": run.pk}, status=status.HTTP_201_CREATED)
        proposals.proposal_dismiss(proposal=proposal, actor=request.user, note=str(request.data.get("note", ""))[:500])
        proposal.refresh_from_db()
        return Response(ProposalSerializer(proposal).data)


class QueueView(APIView):
    @extend_schema(summary="The global run queue with positions (runs of projects you can see)", responses=OpenApiTypes.OBJECT)
    def get(self, request):
        projects = None if request.user.is_superuser else visible_projects(request.user)
        return Response(to_jsonable(queue.queue_status(projects=projects)))


class QueueClearView(APIView):
    @extend_schema(summary="Cancel queued runs (owners: the runs of projects you own; ?project=ID narrows)", request=None, responses=OpenApiTypes.OBJECT)
    def post(self, request):
        projects = visible_projects(request.user)
        project_id = request.query_params.get("project") or request.data.get("project")
        if project_id:
            projects = projects.filter(pk=project_id)
            if not projects.exists():
                raise NotFound(f"Project '{project_id}' was not found.")
        owned = [p.pk for p in projects if has_role(request.user, p, Role.OWNER)]
        if not owned:
            raise PermissionDenied("Clearing the queue needs the owner role on at least one project.")
        cancelled = queue.queue_clear(actor=request.user, projects=Project.objects.filter(pk__in=owned))
        return Response({"cancelled": cancelled, "count": len(cancelled)})
