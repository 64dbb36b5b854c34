"""Execution runs ("sessions"), their steps, messages to them, and LLM usage."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings as conf
from django.db import models
from django.db.models import Q


class AgentBackend(models.TextChoices):
    CLAUDE_CODE = "claude_code", "Claude Code"
    CODEX = "codex", "Codex CLI"
    NATIVE = "native", "Native tool-use loop"
    SCRIPTED = "scripted", "Scripted (offline demo/test backend)"
    TEST_WORKER = "test_worker", "Test worker (no model)"


class RunRole(models.TextChoices):
    CODE = "code", "Code"
    TEST = "test", "Test"
    DOCS = "docs", "Docs"


class RunKind(models.TextChoices):
    AUTONOMOUS = "autonomous", "Autonomous (an agent)"
    INTERACTIVE = "interactive", "Interactive (a human in a terminal)"


class ExecutionRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        PREPARING = "preparing", "Preparing"
        RUNNING = "running", "Running"
        WAITING_APPROVAL = "waiting_approval", "Waiting for approval"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        TIMED_OUT = "timed_out", "Timed out"

    # The named status sets: every view, admin, selector, metric, API filter and service uses these.
    # ACTIVE: a worker holds the run (what the global concurrency cap counts, the dashboard's "active").
    ACTIVE = frozenset({Status.PREPARING, Status.RUNNING, Status.WAITING_APPROVAL})
    # OPEN: queued or active; it occupies its task and a project slot (at most one open code run per task).
    OPEN = frozenset({Status.QUEUED}) | ACTIVE
    TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.TIMED_OUT})
    # FAILED: ended without success and not by a human (counts as an attempt; retried after a backoff).
    FAILED = frozenset({Status.FAILED, Status.TIMED_OUT})
    TRANSITIONS = {
        Status.QUEUED: frozenset({Status.PREPARING, Status.CANCELLED, Status.FAILED}),
        Status.PREPARING: frozenset(
            {Status.RUNNING, Status.FAILED, Status.CANCELLED, Status.TIMED_OUT, Status.QUEUED}
        ),
        Status.RUNNING: frozenset(
            {
                Status.WAITING_APPROVAL,
                Status.SUCCEEDED,
                Status.FAILED,
                Status.CANCELLED,
                Status.TIMED_OUT,
                Status.QUEUED,
            }
        ),
        Status.WAITING_APPROVAL: frozenset(
            {Status.RUNNING, Status.FAILED, Status.CANCELLED, Status.TIMED_OUT}
        ),
        Status.SUCCEEDED: frozenset(),
        Status.FAILED: frozenset(),
        Status.CANCELLED: frozenset(),
        Status.TIMED_OUT: frozenset(),
    }

    project = models.ForeignKey("autopilot.Project", on_delete=models.CASCADE, related_name="runs")
    task = models.ForeignKey(
        "blueprints.Task", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    role = models.CharField(max_length=20, choices=RunRole.choices, default=RunRole.CODE)
    kind = models.CharField(max_length=20, choices=RunKind.choices, default=RunKind.AUTONOMOUS)
    agent_backend = models.CharField(max_length=40, choices=AgentBackend.choices)
    model = models.CharField(max_length=200, blank=True)
    prompt = models.TextField()
    prompt_parts = models.JSONField(
        default=list,
        blank=True,
        help_text="The prompt's labelled parts as sent (runs.context): [{name, label, chars, tokens, …}].",
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    status_reason = models.TextField(blank=True, help_text="Why the run is in its current (terminal) state.")
    autonomy_mode = models.CharField(
        max_length=20, blank=True, help_text="The project's mode when the run was created."
    )
    priority = models.PositiveSmallIntegerField(default=2)
    settings = models.JSONField(
        default=dict,
        blank=True,
        help_text='Backend settings, e.g. {"script": [...], "step_through": true} for scripted.',
    )

    # Workspace
    worktree_path = models.CharField(max_length=1000, blank=True)
    branch = models.CharField(max_length=300, blank=True)
    start_ref = models.CharField(
        max_length=300,
        blank=True,
        help_text="What the run's branch started from (the integration branch, the base branch, a "
        "branch given with --from / from_ref, or the task's own branch for a follow-up).",
    )
    base_commit = models.CharField(max_length=64, blank=True, help_text="The run's start commit.")
    head_commit = models.CharField(max_length=64, blank=True)
    diff_summary = models.JSONField(default=dict, blank=True)
    worktree_removed_at = models.DateTimeField(null=True, blank=True)

    # Claiming and liveness
    lease_owner = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    pid = models.IntegerField(null=True, blank=True)
    stop_requested_at = models.DateTimeField(null=True, blank=True)
    stop_force = models.BooleanField(
        default=False, help_text="The stop asked to kill the agent after a grace period."
    )
    child_pids = models.JSONField(
        default=list, blank=True, help_text="Agent process groups to kill on a forced stop."
    )
    last_step_seq = models.PositiveIntegerField(
        default=0, help_text="Counter that allocates step sequence numbers."
    )

    # Lineage
    attempt = models.PositiveSmallIntegerField(default=1)
    retry_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries"
    )
    resumed_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="resumes"
    )
    backend_session_id = models.CharField(max_length=200, blank=True)

    # Limits and cost
    budget_usd = models.DecimalField(max_digits=10, decimal_places=4, default=Decimal("5"))
    max_turns = models.PositiveIntegerField(default=50)
    max_wall_seconds = models.PositiveIntegerField(default=3600)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cache_read_tokens = models.PositiveBigIntegerField(default=0)
    cache_write_tokens = models.PositiveBigIntegerField(default=0)
    turns = models.PositiveIntegerField(default=0)

    # Outcome
    result_summary = models.TextField(blank=True)
    error = models.TextField(blank=True)
    alignment = models.JSONField(
        default=dict,
        blank=True,
        help_text="The alignment check of the run's change: {verdict: aligned|warn|block, reasons, …}.",
    )

    created_by = models.ForeignKey(
        conf.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    first_step_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(budget_usd__gte=0),
                name="run_budget_not_negative",
                violation_error_message="A run's budget cannot be negative.",
            ),
            models.CheckConstraint(
                condition=Q(cost_usd__gte=0),
                name="run_cost_not_negative",
                violation_error_message="A run's cost cannot be negative.",
            ),
            models.CheckConstraint(
                condition=Q(priority__lte=5),
                name="run_priority_range",
                violation_error_message="Priority is 0–5.",
            ),
            # The manager never starts a task twice: at most one queued or active code run per task.
            # The list is ExecutionRun.OPEN spelled out (Meta cannot see the class body); a test pins it.
            models.UniqueConstraint(
                fields=["task"],
                condition=Q(role="code", status__in=["queued", "preparing", "running", "waiting_approval"]),
                name="run_one_open_code_run_per_task",
                violation_error_message="This task already has a queued or active run.",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "-priority", "created_at"], name="run_queue"),
            models.Index(fields=["project", "status"], name="run_project_status"),
            models.Index(fields=["project", "-created_at"], name="run_project_recent"),
            models.Index(fields=["status", "lease_expires_at"], name="run_lease"),
            models.Index(fields=["task", "status"], name="run_task_status"),
        ]

    def __str__(self) -> str:
        return f"Run #{self.pk} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL


class ExecutionStep(models.Model):
    class Kind(models.TextChoices):
        LLM_TURN = "llm_turn", "LLM turn"
        READ_FILE = "read_file", "Read file"
        WRITE_FILE = "write_file", "Write file"
        EDIT_FILE = "edit_file", "Edit file"
        LIST_DIR = "list_dir", "List directory"
        RUN_TERMINAL = "run_terminal", "Run command"
        SEARCH = "search", "Search"
        MESSAGE = "message", "Message"
        APPROVAL = "approval", "Approval"
        SETUP = "setup", "Setup script"
        TEST = "test", "Test run"
        COMMIT = "commit", "Commit"
        FINISH = "finish", "Finish"
        TOOL = "tool", "Other tool"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        NEEDS_APPROVAL = "needs_approval", "Needs approval"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"
        ROLLED_BACK = "rolled_back", "Rolled back"

    FINISHED = frozenset({Status.COMPLETED, Status.FAILED, Status.SKIPPED, Status.ROLLED_BACK})
    # WAITING: a human must decide (approve or reject) before the run goes on.
    WAITING = frozenset({Status.NEEDS_APPROVAL})
    TRANSITIONS = {
        Status.PENDING: frozenset(
            {Status.NEEDS_APPROVAL, Status.RUNNING, Status.SKIPPED, Status.COMPLETED, Status.FAILED}
        ),
        Status.NEEDS_APPROVAL: frozenset({Status.RUNNING, Status.SKIPPED, Status.FAILED}),
        Status.RUNNING: frozenset({Status.COMPLETED, Status.FAILED}),
        Status.COMPLETED: frozenset({Status.ROLLED_BACK}),
        Status.FAILED: frozenset({Status.ROLLED_BACK}),
        Status.SKIPPED: frozenset(),
        Status.ROLLED_BACK: frozenset(),
    }

    run = models.ForeignKey(ExecutionRun, on_delete=models.CASCADE, related_name="steps")
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=30, choices=Kind.choices)
    tool_name = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    risky = models.BooleanField(default=False)
    risk_reason = models.CharField(max_length=500, blank=True)
    input = models.JSONField(default=dict, blank=True)
    output = models.TextField(blank=True)
    output_truncated = models.BooleanField(default=False)
    artifact_path = models.CharField(
        max_length=1000, blank=True, help_text="Full output when it was too large."
    )
    diff = models.TextField(blank=True)
    rollback = models.JSONField(default=dict, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    decided_by = models.ForeignKey(
        conf.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decision_note = models.TextField(blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run_id", "seq"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "seq"],
                name="step_unique_seq_per_run",
                violation_error_message="Step sequence numbers are unique within a run.",
            ),
        ]
        indexes = [models.Index(fields=["run", "status"], name="step_run_status")]

    def __str__(self) -> str:
        return f"Step {self.seq} of run {self.run_id}: {self.kind}"

    @property
    def project(self):
        """The run's project (permissions and event routing treat a step as part of its project)."""
        return self.run.project

    @property
    def project_id(self) -> int:
        return self.run.project_id


class RunMessage(models.Model):
    """A human's message to a running or finished run."""

    run = models.ForeignKey(ExecutionRun, on_delete=models.CASCADE, related_name="messages")
    author = models.ForeignKey(
        conf.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    body = models.TextField()
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run_id", "created_at", "id"]
        indexes = [models.Index(fields=["run", "delivered_at"], name="runmessage_pending")]

    def __str__(self) -> str:
        return f"Message to run {self.run_id}"


class UsageRecord(models.Model):
    """One LLM call or agent turn."""

    project = models.ForeignKey("autopilot.Project", on_delete=models.CASCADE, related_name="usage_records")
    run = models.ForeignKey(
        ExecutionRun, null=True, blank=True, on_delete=models.CASCADE, related_name="usage_records"
    )
    step = models.ForeignKey(
        ExecutionStep, null=True, blank=True, on_delete=models.SET_NULL, related_name="usage_records"
    )
    agent_backend = models.CharField(max_length=40, blank=True)
    model = models.CharField(max_length=200)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cache_read_tokens = models.PositiveIntegerField(default=0)
    cache_write_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    priced = models.BooleanField(
        default=True, help_text="False when the model was missing from the price table."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(cost_usd__gte=0),
                name="usage_cost_not_negative",
                violation_error_message="Cost cannot be negative.",
            ),
        ]
        indexes = [
            models.Index(fields=["project", "created_at"], name="usage_project_day"),
            models.Index(fields=["run", "created_at"], name="usage_run"),
        ]

    def __str__(self) -> str:
        return f"{self.model}: {self.input_tokens}+{self.output_tokens} tok, ${self.cost_usd}"


class Integration(models.Model):
    """One attempt to merge a task's branch into the project's integration branch (a merge request).

    Queued when the task's run succeeded (and, when review is required, a human approved it); the
    merge queue (runs.integration) takes one per project at a time: brings the branch onto the current
    integration head with the project's strategy in a private integration worktree, runs the
    integration test command there, and only when it passes moves the integration branch with a
    compare-and-swap. A failure never moves the branch.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        MERGING = "merging", "Merging"
        TESTING = "testing", "Testing"
        MERGED = "merged", "Merged"
        CONFLICT = "conflict", "Conflict"
        TESTS_FAILED = "tests_failed", "Tests failed"
        SKIPPED = "skipped", "Skipped"
        CANCELLED = "cancelled", "Cancelled"

    # IN_FLIGHT: the merge queue is working on it (at most one per project, a constraint says so).
    IN_FLIGHT = frozenset({Status.MERGING, Status.TESTING})
    # OPEN: waiting in the queue or in flight (at most one per task).
    OPEN = frozenset({Status.QUEUED}) | IN_FLIGHT
    # FAILED: the branch did not go in; the task's owner reacts (a follow-up run or a human).
    FAILED = frozenset({Status.CONFLICT, Status.TESTS_FAILED})
    TERMINAL = frozenset({Status.MERGED, Status.SKIPPED, Status.CANCELLED}) | FAILED
    TRANSITIONS = {
        Status.QUEUED: frozenset({Status.MERGING, Status.SKIPPED, Status.CANCELLED}),
        # MERGING/TESTING → QUEUED: the worker died mid-merge (expired lease); the merge is retried.
        Status.MERGING: frozenset(
            {Status.TESTING, Status.MERGED, Status.CONFLICT, Status.SKIPPED, Status.CANCELLED, Status.QUEUED}
        ),
        Status.TESTING: frozenset({Status.MERGED, Status.TESTS_FAILED, Status.CANCELLED, Status.QUEUED}),
        Status.MERGED: frozenset(),
        Status.CONFLICT: frozenset({Status.QUEUED, Status.CANCELLED, Status.SKIPPED}),
        Status.TESTS_FAILED: frozenset({Status.QUEUED, Status.CANCELLED, Status.SKIPPED}),
        Status.SKIPPED: frozenset(),
        Status.CANCELLED: frozenset(),
    }

    project = models.ForeignKey("autopilot.Project", on_delete=models.CASCADE, related_name="integrations")
    task = models.ForeignKey("blueprints.Task", on_delete=models.CASCADE, related_name="integrations")
    run = models.ForeignKey(
        ExecutionRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="integrations"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    status_reason = models.TextField(blank=True)
    branch = models.CharField(max_length=300, help_text="The task's branch being merged.")
    head_commit = models.CharField(max_length=64, blank=True, help_text="The branch's head when queued.")
    target_branch = models.CharField(max_length=200, help_text="The integration branch.")
    strategy = models.CharField(max_length=20, blank=True)
    onto_commit = models.CharField(
        max_length=64, blank=True, help_text="The integration head the branch was brought onto."
    )
    merge_commit = models.CharField(max_length=64, blank=True, help_text="The integration head after it.")
    test_command = models.CharField(max_length=1000, blank=True)
    tests_passed = models.BooleanField(null=True, blank=True)
    test_output = models.TextField(blank=True, help_text="The tail of the test output (redacted).")
    conflict_files = models.JSONField(default=list, blank=True)
    conflict_detail = models.TextField(blank=True, help_text="Both sides of each conflicting hunk.")
    diff_summary = models.JSONField(default=dict, blank=True)
    attempt = models.PositiveSmallIntegerField(default=1)
    lease_owner = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        conf.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["project_id", "queued_at", "id"]
        constraints = [
            # One merge at a time per project (the queue also serializes with a lock; this is the floor).
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(status__in=["merging", "testing"]),
                name="integration_one_in_flight_per_project",
                violation_error_message="Another merge of this project is in flight.",
            ),
            models.UniqueConstraint(
                fields=["task"],
                condition=Q(status__in=["queued", "merging", "testing"]),
                name="integration_one_open_per_task",
                violation_error_message="This task is already in the merge queue.",
            ),
        ]
        indexes = [
            models.Index(fields=["project", "status", "queued_at"], name="integration_queue"),
            models.Index(fields=["task", "-queued_at"], name="integration_task_recent"),
        ]

    def __str__(self) -> str:
        return f"Integration #{self.pk} of task {self.task_id} ({self.status})"


class TaskReview(models.Model):
    """A human's review of a task's delivered work (its run's branch)."""

    class Decision(models.TextChoices):
        APPROVED = "approved", "Approved"
        CHANGES_REQUESTED = "changes_requested", "Changes requested"
        REJECTED = "rejected", "Rejected"

    task = models.ForeignKey("blueprints.Task", on_delete=models.CASCADE, related_name="reviews")
    run = models.ForeignKey(
        ExecutionRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="reviews"
    )
    decision = models.CharField(max_length=20, choices=Decision.choices)
    comment = models.TextField(blank=True)
    author = models.ForeignKey(
        conf.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["task_id", "-created_at", "-id"]
        indexes = [models.Index(fields=["task", "-created_at"], name="taskreview_recent")]

    def __str__(self) -> str:
        return f"Review of task {self.task_id}: {self.decision}"

    @property
    def project(self):
        return self.task.project


class ProjectSnapshot(models.Model):
    """A project's state at a moment ("CEO dashboard"): progress per phase, in flight, blocked, merges,
    spend against the caps, velocity, a projected finish and fragile areas (runs.snapshot computes
    `data`; deterministic). `narrative` is the optional prose of the manager-role model."""

    project = models.ForeignKey("autopilot.Project", on_delete=models.CASCADE, related_name="snapshots")
    data = models.JSONField(default=dict, blank=True)
    narrative = models.TextField(blank=True, help_text="The manager-role model's summary (redacted).")
    narrative_model = models.CharField(max_length=200, blank=True)
    narrative_error = models.TextField(blank=True, help_text="Why a requested narrative is missing.")
    created_by = models.ForeignKey(
        conf.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project_id", "-created_at", "-id"]
        indexes = [models.Index(fields=["project", "-created_at", "-id"], name="snapshot_project_recent")]

    def __str__(self) -> str:
        return f"Snapshot #{self.pk} of project {self.project_id}"
