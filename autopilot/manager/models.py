"""The manager's data: proposals (suggest mode) and learning signals per file.

The tick's bookkeeping on a project (Project.tick_pending, last_tick_at, last_tick_summary) stays in
the project's row, for one read per project, and is written only by the manager
(autopilot.manager.requests and tick).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class Proposal(models.Model):
    """In `suggest` mode, the manager's proposed run for a task, awaiting a human."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACCEPTED = "accepted", "Accepted"
        DISMISSED = "dismissed", "Dismissed"
        EXPIRED = "expired", "Expired"

    TRANSITIONS = {
        Status.PENDING: frozenset({Status.ACCEPTED, Status.DISMISSED, Status.EXPIRED}),
        Status.ACCEPTED: frozenset(),
        Status.DISMISSED: frozenset({Status.PENDING}),
        Status.EXPIRED: frozenset(),
    }

    project = models.ForeignKey("autopilot.Project", on_delete=models.CASCADE, related_name="proposals")
    task = models.ForeignKey("blueprints.Task", on_delete=models.CASCADE, related_name="proposals")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    role = models.CharField(max_length=20, default="code")
    agent_backend = models.CharField(max_length=40, blank=True)
    model = models.CharField(max_length=200, blank=True)
    score = models.FloatField(default=0)
    reason = models.TextField(blank=True)
    run = models.ForeignKey(
        "runs.ExecutionRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "autopilot_proposal"  # created by the core before the manager became its own app
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["task"],
                condition=Q(status="pending"),
                name="proposal_one_pending_per_task",
                violation_error_message="This task already has a pending proposal.",
            ),
        ]
        indexes = [models.Index(fields=["project", "status", "-created_at"], name="proposal_project_status")]

    def __str__(self) -> str:
        return f"Proposal #{self.pk} for task {self.task_id} ({self.status})"


class FileStat(models.Model):
    """Learning signal per file: how often runs touching it failed or had to be redone."""

    project = models.ForeignKey("autopilot.Project", on_delete=models.CASCADE, related_name="file_stats")
    path = models.CharField(max_length=1000)
    runs = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)
    reworks = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "autopilot_filestat"  # created by the core before the manager became its own app
        ordering = ["project_id", "-failures", "path"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "path"],
                name="filestat_unique_path",
                violation_error_message="One statistics row per file and project.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.path}: {self.failures} failures, {self.reworks} reworks"
