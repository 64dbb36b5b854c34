"""Serializers of the core API. They validate shapes and types; the services validate the domain."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from rest_framework import serializers

from autopilot.api.fields import IdField
from autopilot.errors import ApplicationError
from autopilot.input_limits import MAX_DESCRIPTION_CHARS
from autopilot.models import AutonomyMode, Event, PlanOrderPolicy, Project, ProjectMembership, Role
from autopilot.services import AUTONOMY_FIELDS, BASIC_FIELDS
from blueprints.models import PlanNode

# One list of project fields: the services' (the API must not drift from them).


class ProjectSerializer(serializers.ModelSerializer):
    my_role = serializers.ChoiceField(
        choices=Role.choices, read_only=True, allow_null=True, help_text="Your role on this project."
    )

    class Meta:
        model = Project
        fields = (
            "id",
            "slug",
            *BASIC_FIELDS,
            *AUTONOMY_FIELDS,
            "my_role",
            "last_tick_at",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields


class _ProjectWriteFields(serializers.Serializer):
    description = serializers.CharField(required=False, allow_blank=True, max_length=MAX_DESCRIPTION_CHARS)
    subdirectory = serializers.CharField(required=False, allow_blank=True, max_length=500)
    base_branch = serializers.CharField(required=False, max_length=200)
    test_command = serializers.CharField(required=False, allow_blank=True, max_length=1000)
    setup_script = serializers.CharField(required=False, allow_blank=True)
    command_allowlist = serializers.ListField(child=serializers.CharField(), required=False)
    allow_shell = serializers.BooleanField(required=False)
    setup_network = serializers.BooleanField(
        required=False,
        help_text="Let the setup script reach the network (sandboxed runs have none otherwise).",
    )
    autonomy_mode = serializers.ChoiceField(choices=AutonomyMode.choices, required=False)
    paused = serializers.BooleanField(required=False)
    active_phase = IdField(required=False, allow_null=True, help_text="A plan node id of this project.")
    max_parallel_runs = serializers.IntegerField(required=False, min_value=1, max_value=1000)
    default_run_budget_usd = serializers.DecimalField(
        required=False, max_digits=10, decimal_places=4, min_value=0
    )
    daily_budget_usd = serializers.DecimalField(
        required=False, allow_null=True, max_digits=10, decimal_places=4, min_value=0
    )
    max_attempts = serializers.IntegerField(required=False, min_value=1, max_value=100)
    auto_complete_on_tests = serializers.BooleanField(required=False)
    plan_order_policy = serializers.ChoiceField(choices=PlanOrderPolicy.choices, required=False)
    model_matrix = serializers.DictField(
        child=serializers.DictField(child=serializers.CharField()), required=False
    )
    context_budget_tokens = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=500,
        max_value=2_000_000,
        help_text="Tokens (≈ characters / 4) for each agent's context bundle; null: a share of the model's "
        "context window.",
    )
    allow_shared_repo = serializers.BooleanField(
        required=False,
        write_only=True,
        help_text="Staff only: let this project use a repository another project already uses.",
    )

    def validate_active_phase(self, value):
        if value is None:
            return None
        node = PlanNode.objects.filter(pk=value).first()
        if node is None:
            # The service's answer for another project's node, word for word and in the same shape
            # ({"detail": ...}): no oracle of what exists.
            raise ApplicationError("The active phase must be a plan node of this project.")
        return node


class ProjectCreateSerializer(_ProjectWriteFields):
    name = serializers.CharField(max_length=200)
    repo_path = serializers.CharField(max_length=1000, help_text="Absolute path of a local git repository.")


class ProjectUpdateSerializer(_ProjectWriteFields):
    name = serializers.CharField(max_length=200, required=False)
    repo_path = serializers.CharField(max_length=1000, required=False)


class MembershipSerializer(serializers.ModelSerializer):
    user = serializers.IntegerField(source="user_id", read_only=True)
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = ProjectMembership
        fields = ("user", "username", "role", "created_at")
        read_only_fields = fields


class MembershipWriteSerializer(serializers.Serializer):
    user = IdField(required=False, help_text="User id (or give username).")
    username = serializers.CharField(required=False)
    role = serializers.ChoiceField(choices=Role.choices)

    def validate(self, attrs):
        User = get_user_model()
        if attrs.get("user") is not None:
            user = User.objects.filter(pk=attrs["user"], is_active=True).first()
        elif attrs.get("username"):
            user = User.objects.filter(username=attrs["username"], is_active=True).first()
        else:
            raise serializers.ValidationError("Give the member's user id or username.")
        if user is None:
            raise serializers.ValidationError({"user": "No such active user."})
        attrs["user_obj"] = user
        return attrs


class EventSerializer(serializers.ModelSerializer):
    actor_username = serializers.CharField(
        source="actor.username", read_only=True, allow_null=True, default=None
    )

    class Meta:
        model = Event
        fields = (
            "id",
            "kind",
            "project",
            "subject_type",
            "subject_id",
            "actor",
            "actor_username",
            "data",
            "created_at",
        )
        read_only_fields = fields


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False, write_only=True)


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text='Send as "Authorization: Token <token>".')
    username = serializers.CharField()
