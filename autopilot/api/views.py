"""Core REST API: projects, members, the event log, API tokens. Thin: validate, call a service, render.

Roles come from autopilot.permissions: a project you are not a member of is a 404; a write your role
does not allow is a 403 whose message names the role needed.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import authenticate
from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import Throttled
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from autopilot import logins, selectors, services
from autopilot.api.schema import error_response
from autopilot.api.serializers import (
    AUTONOMY_FIELDS,
    BASIC_FIELDS,
    EventSerializer,
    MembershipSerializer,
    MembershipWriteSerializer,
    ProjectCreateSerializer,
    ProjectSerializer,
    ProjectUpdateSerializer,
    TokenRequestSerializer,
    TokenSerializer,
)
from autopilot.errors import NotFound, PermissionDenied
from autopilot.filtersets import EventFilterSet, ProjectFilterSet
from autopilot.models import Event, Project, Role
from autopilot.permissions import require_role

ERRORS = {code: error_response(code) for code in (400, 403, 404)}


@extend_schema_view(
    list=extend_schema(summary="Projects you can see"),
    retrieve=extend_schema(summary="One project", responses={200: ProjectSerializer, 404: ERRORS[404]}),
)
class ProjectViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = ProjectSerializer
    filterset_class = ProjectFilterSet
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    queryset = Project.objects.none()  # for the schema; requests use get_queryset

    def get_queryset(self):
        return selectors.project_list(user=self.request.user)

    def _fresh(self, project):
        return selectors.project_list(user=self.request.user).get(pk=project.pk)

    @extend_schema(
        summary="Register a project (you become its owner; needs the right to register repositories)",
        request=ProjectCreateSerializer,
        responses={201: ProjectSerializer, 400: ERRORS[400]},
    )
    def create(self, request):
        serializer = ProjectCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        project = services.project_create(actor=request.user, **serializer.validated_data)
        return Response(ProjectSerializer(self._fresh(project)).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Change a project: operators pause/resume and pick the phase, owners the settings, "
        "trusted owners what executes (autopilot.permissions.FIELD_ROLES); autonomy settings are "
        "recorded as events",
        request=ProjectUpdateSerializer,
        responses={200: ProjectSerializer, **ERRORS},
    )
    def partial_update(self, request, pk=None):
        project = self.get_object()
        require_role(request.user, project, Role.OPERATOR)
        serializer = ProjectUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        basic = {key: value for key, value in data.items() if key in BASIC_FIELDS}
        autonomy = {key: value for key, value in data.items() if key in AUTONOMY_FIELDS}
        shared = {"allow_shared_repo": True} if data.get("allow_shared_repo") else {}
        with transaction.atomic():
            if basic:
                services.project_update(project=project, actor=request.user, **shared, **basic)
            if autonomy:
                services.project_update_autonomy(project=project, actor=request.user, **autonomy)
        return Response(ProjectSerializer(self._fresh(project)).data)

    @extend_schema(summary="Delete a project and everything in it (owners)", responses={204: None, **ERRORS})
    def destroy(self, request, pk=None):
        project = self.get_object()
        require_role(request.user, project, Role.OWNER)
        services.project_delete(project=project, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        methods=["GET"],
        summary="Members of a project (viewers)",
        responses={200: MembershipSerializer(many=True)},
    )
    @extend_schema(
        methods=["POST"],
        summary="Add a member or change a member's role (owners)",
        request=MembershipWriteSerializer,
        responses={200: MembershipSerializer, 201: MembershipSerializer, **ERRORS},
    )
    @action(
        detail=True, methods=["get", "post"], url_path="members", pagination_class=None, filterset_class=None
    )
    def members(self, request, pk=None):
        project = self.get_object()
        if request.method == "GET":
            memberships = selectors.membership_list(project=project)
            return Response(MembershipSerializer(memberships, many=True).data)
        require_role(request.user, project, Role.OWNER)
        serializer = MembershipWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = serializer.validated_data["user_obj"]
        existed = selectors.membership_list(project=project).filter(user=user).exists()
        membership = services.membership_set(
            project=project, user=user, role=serializer.validated_data["role"], actor=request.user
        )
        return Response(
            MembershipSerializer(membership).data,
            status=status.HTTP_200_OK if existed else status.HTTP_201_CREATED,
        )

    @extend_schema(
        summary="Remove a member (owners); a project keeps at least one owner",
        parameters=[OpenApiParameter("user_id", OpenApiTypes.INT, OpenApiParameter.PATH)],
        responses={204: None, **ERRORS},
    )
    @action(detail=True, methods=["delete"], url_path=r"members/(?P<user_id>\d+)", filterset_class=None)
    def remove_member(self, request, pk=None, user_id=None):
        from django.contrib.auth import get_user_model

        project = self.get_object()
        require_role(request.user, project, Role.OWNER)
        user = get_user_model().objects.filter(pk=user_id).first()
        if user is None:
            raise NotFound(f"No user {user_id}.")
        services.membership_remove(project=project, user=user, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    list=extend_schema(
        summary="The event log of projects you can see, oldest first (for audit and reconnecting clients)"
    ),
    retrieve=extend_schema(summary="One event"),
)
class EventViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = EventSerializer
    filterset_class = EventFilterSet

    queryset = Event.objects.none()  # for the schema; requests use get_queryset

    def get_queryset(self):
        return selectors.event_list(user=self.request.user)


class TokenThrottle(AnonRateThrottle):
    rate = "30/min"


class TokenObtainView(APIView):
    """Exchange a username and password for the user's API token (created on first use)."""

    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes = [TokenThrottle]

    @extend_schema(
        summary="Obtain an API token",
        request=TokenRequestSerializer,
        responses={
            200: TokenSerializer,
            400: error_response(400),
            403: OpenApiResponse(error_response(403).response, description="Wrong username or password"),
            429: OpenApiResponse(
                error_response(429).response,
                description="Too many requests, or too many failed logins for "
                "this username from this address (`Retry-After`)",
            ),
        },
        auth=[],
    )
    def post(self, request):
        serializer = TokenRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        # `request` (DRF's) carries axes' verdict back: a locked-out pair is refused before any
        # password check, and the failure that reaches the limit is answered the same way.
        user = authenticate(
            request,
            username=serializer.validated_data["username"],
            password=serializer.validated_data["password"],
        )
        if user is None and getattr(request, "axes_locked_out", False):
            raise Throttled(wait=settings.AXES_COOLOFF_TIME.total_seconds(), detail=logins.lockout_message())
        if user is None or not user.is_active:
            raise PermissionDenied("Wrong username or password.")
        return Response({"token": services.user_token(user=user), "username": user.get_username()})
