"""Core domain: projects, membership, the event log and the manager's proposals."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q


class AutonomyMode(models.TextChoices):
    OFF = "off", "Off"
    SUGGEST = "suggest", "Suggest"
    SEMI_AUTO = "semi_auto", "Semi-auto"
    FULL_AUTO = "full_auto", "Full-auto"


class PlanOrderPolicy(models.TextChoices):
    NONE = "none", "No implicit order"
    PHASES = "phases", "Phase N after phase N-1"
    SIBLINGS = "siblings", "Every section after its previous sibling"


class MergeStrategy(models.TextChoices):
    MERGE = "merge", "Merge commit"
    SQUASH = "squash", "Squash"
    REBASE = "rebase", "Rebase + fast-forward"


class ConflictPolicy(models.TextChoices):
    AGENT = "agent", "A follow-up run of the task resolves it"
    HUMAN = "human", "Wait for a human"


DEFAULT_INTEGRATION_BRANCH = "autopilot/integration"


class Project(models.Model):
    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    repo_path = models.CharField(max_length=1000, help_text="Absolute path of a local git repository.")
    subdirectory = models.CharField(
        max_length=500, blank=True, help_text="Work inside this subdirectory of the repository (monorepos)."
    )
    base_branch = models.CharField(max_length=200, default="main")
    test_command = models.CharField(max_length=1000, blank=True)
    setup_script = models.TextField(
        blank=True, help_text="Runs in every fresh worktree before the agent starts."
    )
    command_allowlist = models.JSONField(
        default=list, blank=True, help_text="Program names the agent may run without approval."
    )
    allow_shell = models.BooleanField(default=False, help_text="Let commands run through a shell.")
    setup_network = models.BooleanField(
        default=False,
        help_text="Let the setup script reach the network (e.g. to install packages). "
        "Agent commands and the test command never have network in the sandbox.",
    )

    # Autonomy
    autonomy_mode = models.CharField(max_length=20, choices=AutonomyMode.choices, default=AutonomyMode.OFF)
    paused = models.BooleanField(default=False)
    active_phase = models.ForeignKey(
        "blueprints.PlanNode", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    max_parallel_runs = models.PositiveSmallIntegerField(default=2)
    default_run_budget_usd = models.DecimalField(max_digits=10, decimal_places=4, default=Decimal("5"))
    daily_budget_usd = models.DecimalField(
        max_digits=10, decimal_places=4, null=True, blank=True, help_text="Empty means no daily cap."
    )
    max_attempts = models.PositiveSmallIntegerField(default=3)
    auto_complete_on_tests = models.BooleanField(
        default=False, help_text="Mark a task done (not review) when its run succeeds and the tests pass."
    )
    plan_order_policy = models.CharField(
        max_length=20, choices=PlanOrderPolicy.choices, default=PlanOrderPolicy.NONE
    )
    model_matrix = models.JSONField(
        default=dict,
        blank=True,
        help_text='Role → {"agent": backend, "model": name}; roles: manager, code, test, docs.',
    )
    context_budget_tokens = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(500), MaxValueValidator(2_000_000)],
        help_text="Tokens (≈ characters / 4) for each agent's context bundle (runs.bundle). Empty: a share "
        "of the run's model's context window.",
    )

    # Integration (runs.integration): finished work is merged, in dependency order, into one branch.
    integration_branch = models.CharField(
        max_length=200,
        default=DEFAULT_INTEGRATION_BRANCH,
        help_text="Where finished tasks are merged (created from the base branch at the first merge). "
        "The base branch's name here means: integrate straight into the base branch.",
    )
    merge_strategy = models.CharField(
        max_length=20, choices=MergeStrategy.choices, default=MergeStrategy.MERGE
    )
    review_required = models.BooleanField(
        null=True,
        blank=True,
        help_text="A human approves each task's work before it is merged. Empty: required in suggest "
        "and semi_auto, not in full_auto.",
    )
    integration_test_command = models.CharField(
        max_length=1000, blank=True, help_text="Runs before every merge. Empty: the test command."
    )
    conflict_policy = models.CharField(
        max_length=20, choices=ConflictPolicy.choices, default=ConflictPolicy.AGENT
    )
    integration_remote = models.CharField(
        max_length=1000,
        blank=True,
        help_text="A git remote (name or URL) the integration branch is pushed to after each merge.",
    )
    push_task_branches = models.BooleanField(
        default=False, help_text="Also push each task's branch to the remote."
    )

    # Manager bookkeeping (written by autopilot.manager only)
    tick_pending = models.BooleanField(
        default=False, help_text="A tick is enqueued and not started yet (de-duplicates event-driven ticks)."
    )
    last_tick_at = models.DateTimeField(null=True, blank=True)
    last_tick_summary = models.JSONField(
        default=dict, blank=True, help_text="What the last tick did and why."
    )

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [
            (
                "register_repository",
                "Can register repositories and change what executes (setup script, tests, allowlist, shell)",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(max_parallel_runs__gte=1),
                name="project_max_parallel_at_least_1",
                violation_error_message="max_parallel_runs must be at least 1.",
            ),
            models.CheckConstraint(
                condition=Q(default_run_budget_usd__gte=0),
                name="project_run_budget_not_negative",
                violation_error_message="The default run budget cannot be negative.",
            ),
            models.CheckConstraint(
                condition=Q(daily_budget_usd__isnull=True) | Q(daily_budget_usd__gte=0),
                name="project_daily_budget_not_negative",
                violation_error_message="The daily budget cannot be negative.",
            ),
            models.CheckConstraint(
                condition=Q(max_attempts__gte=1),
                name="project_max_attempts_at_least_1",
                violation_error_message="max_attempts must be at least 1.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def integrates_into_base(self) -> bool:
        return self.integration_branch == self.base_branch

    @property
    def needs_review(self) -> bool:
        """Does a human approve each task's work before it is merged? (explicit setting, else by mode)"""
        if self.review_required is not None:
            return self.review_required
        return self.autonomy_mode != AutonomyMode.FULL_AUTO

    @property
    def effective_integration_test_command(self) -> str:
        return (self.integration_test_command or self.test_command).strip()

    def agent_for(self, role: str) -> tuple[str, str]:
        """(backend, model) for a role: the project's matrix, else the global defaults."""
        entry = (self.model_matrix or {}).get(role) or {}
        return (
            entry.get("agent") or settings.AUTOPILOT_DEFAULT_AGENT,
            entry.get("model") or settings.AUTOPILOT_DEFAULT_MODEL,
        )


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    OPERATOR = "operator", "Operator"
    VIEWER = "viewer", "Viewer"


ROLE_RANK = {Role.VIEWER: 1, Role.OPERATOR: 2, Role.OWNER: 3}


class ProjectMembership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="project_memberships"
    )
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project_id", "user_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "user"],
                name="membership_unique_user_per_project",
                violation_error_message="This user is already a member of the project.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} → {self.project} ({self.role})"


class Event(models.Model):
    """Append-only, ordered log: the source for live updates, reconnecting clients and audit."""

    id = models.BigAutoField(primary_key=True)
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.CASCADE, related_name="events"
    )
    kind = models.CharField(
        max_length=100, help_text="e.g. executionrun.status, tick.decision, project.autonomy"
    )
    subject_type = models.CharField(max_length=100, blank=True)
    subject_id = models.BigIntegerField(null=True, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["project", "id"], name="event_project_id"),
            models.Index(fields=["subject_type", "subject_id", "id"], name="event_subject"),
            models.Index(fields=["kind", "id"], name="event_kind"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind}"


class DefaultProject(models.Model):
    """The project a user's CLI commands use when none is given and the current directory lies in no
    registered project (`autopilot project set-default NAME`)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.user_id} → {self.project_id}"
