"""REST doors of the manager, as viewset actions. Each action: validate the input (a serializer),
check the role, call one service or selector, render (the serializers in serializers.py describe
every answer in the OpenAPI schema)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from autopilot.cli_support import to_jsonable
from autopilot.errors import NotFound, PermissionDenied
from autopilot.manager import explain, metrics, proposals, queue
from autopilot.manager.api import serializers as s
from autopilot.manager.models import Proposal
from autopilot.manager.tick import tick_project
from autopilot.models import Project, Role
from autopilot.permissions import has_role, project_for, require_role, visible_projects


class ProjectManagerViewSet(viewsets.ViewSet):
    """The manager's view of one project: its plan, learning metrics, proposals; a tick; refinement."""

    @extend_schema(
        summary="What the next tick would start, and why not for every other ready task",
        responses=s.ManagerPlanSerializer,
    )
    @action(detail=True, methods=["get"], url_path="manager/plan")
    def plan(self, request, pk: int):
        return Response(to_jsonable(explain.manager_plan(project_for(request.user, pk))))

    @extend_schema(
        summary="Cycle time, difficulty, fragile areas, plan deviation rate, cost per task",
        responses=s.LearningMetricsSerializer,
    )
    @action(detail=True, methods=["get"], url_path="learning_metrics")
    def learning_metrics(self, request, pk: int):
        return Response(to_jsonable(metrics.learning_metrics(project_for(request.user, pk))))

    @extend_schema(
        summary="Run one manager tick of this project now", request=None, responses=s.TickReportSerializer
    )
    @action(detail=True, methods=["post"], url_path="autopilot_tick")
    def tick(self, request, pk: int):
        project = project_for(request.user, pk, Role.OPERATOR)
        report = tick_project(project, reason="api", actor=request.user)
        return Response(to_jsonable(report.as_dict()))

    @extend_schema(
        summary="Re-rank learned priorities from the learned signals",
        request=None,
        responses=s.RefinePlanSerializer,
    )
    @action(detail=True, methods=["post"], url_path="refine_plan")
    def refine_plan(self, request, pk: int):
        project = project_for(request.user, pk, Role.OPERATOR)
        return Response(to_jsonable(metrics.refine_plan(project=project, actor=request.user)))

    @extend_schema(
        summary="The manager's proposals (suggest mode), newest first",
        parameters=[s.ProposalStatusQuerySerializer],
        responses=s.ProposalSerializer(many=True),
    )
    @action(detail=True, methods=["get"])
    def proposals(self, request, pk: int):
        project = project_for(request.user, pk)
        query = s.ProposalStatusQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = proposals.proposals_for(project, status=query.validated_data.get("status") or None)[:500]
        return Response(s.ProposalSerializer(rows, many=True).data)


class ProposalViewSet(viewsets.ViewSet):
    """A human's decision on a proposal."""

    def _proposal(self, request, pk: int) -> Proposal:
        # Proposals of visible projects only: another project's is a 404 like a missing one.
        visible = Proposal.objects.filter(project__in=visible_projects(request.user))
        proposal = get_object_or_404(visible.select_related("project"), pk=pk)
        require_role(request.user, proposal.project, Role.OPERATOR)
        return proposal

    @extend_schema(
        summary="Accept a proposal: start its run", request=None, responses={201: s.ProposalSerializer}
    )
    @action(detail=True, methods=["post"])
    def accept(self, request, pk: int):
        proposal = self._proposal(request, pk)
        run = proposals.proposal_accept(proposal=proposal, actor=request.user)
        proposal.refresh_from_db()
        data = {**s.ProposalSerializer(proposal).data, "run": run.pk}
        return Response(data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Dismiss a proposal", request=s.ProposalDismissSerializer, responses=s.ProposalSerializer
    )
    @action(detail=True, methods=["post"])
    def dismiss(self, request, pk: int):
        proposal = self._proposal(request, pk)
        body = s.ProposalDismissSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        note = body.validated_data["note"][:500]
        proposals.proposal_dismiss(proposal=proposal, actor=request.user, note=note)
        proposal.refresh_from_db()
        return Response(s.ProposalSerializer(proposal).data)


class QueueViewSet(viewsets.ViewSet):
    """The global run queue."""

    @extend_schema(
        summary="The global run queue with positions (runs of projects you can see)",
        responses=s.QueueStatusSerializer,
    )
    @action(detail=False, methods=["get"])
    def overview(self, request):
        projects = None if request.user.is_superuser else visible_projects(request.user)
        return Response(to_jsonable(queue.queue_status(projects=projects)))

    @extend_schema(
        summary="Cancel queued runs (owners: the runs of projects you own; ?project=ID narrows)",
        parameters=[OpenApiParameter("project", int, required=False)],
        request=s.QueueClearSerializer,
        responses=s.QueueClearResultSerializer,
    )
    @action(detail=False, methods=["post"])
    def clear(self, request):
        given = request.query_params.get("project") or request.data.get("project")
        body = s.QueueClearSerializer(data={} if given in (None, "") else {"project": given})
        body.is_valid(raise_exception=True)
        projects = visible_projects(request.user)
        project_id = body.validated_data.get("project")
        if project_id:
            projects = projects.filter(pk=project_id)
            if not projects.exists():
                raise NotFound(f"Project '{project_id}' was not found.")
        owned = [p.pk for p in projects if has_role(request.user, p, Role.OWNER)]
        if not owned:
            raise PermissionDenied("Clearing the queue needs the owner role on at least one project.")
        cancelled = queue.queue_clear(actor=request.user, projects=Project.objects.filter(pk__in=owned))
        return Response({"cancelled": cancelled, "count": len(cancelled)})
