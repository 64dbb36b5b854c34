"""Blueprints (versioned specs), their ingestion, the plan tree, tasks and the dependency graph."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class Blueprint(models.Model):
    """One version of a project's spec document. Exactly one version per project is active.

    Its text is in BlueprintText and its plan tree in PlanLayout (one row each, written once): this
    row stays small, so superseding a version does not rewrite megabytes."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Active"
        SUPERSEDED = "superseded", "Superseded"

    TRANSITIONS = {
        Status.DRAFT: frozenset({Status.ACTIVE}),
        Status.ACTIVE: frozenset({Status.SUPERSEDED}),
        Status.SUPERSEDED: frozenset({Status.ACTIVE}),
    }

    class Format(models.TextChoices):
        MARKDOWN = "markdown", "Markdown"
        TEXT = "text", "Plain text"

    project = models.ForeignKey("autopilot.Project", on_delete=models.CASCADE, related_name="blueprints")
    title = models.CharField(max_length=300, blank=True)
    version = models.PositiveIntegerField()
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DRAFT)
    format = models.CharField(max_length=20, choices=Format.choices, default=Format.MARKDOWN)
    content_hash = models.CharField(max_length=64)
    size_bytes = models.PositiveBigIntegerField(default=0)
    diff = models.JSONField(
        default=dict, blank=True, help_text="Added / changed / removed / moved against the parent."
    )
    counts = models.JSONField(
        default=dict, blank=True, help_text="Nodes, headings, checklist items, diff sizes, tasks."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["project_id", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "version"],
                name="blueprint_unique_version",
                violation_error_message="This project already has a blueprint with that version number.",
            ),
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(status="active"),
                name="blueprint_one_active_per_project",
                violation_error_message="A project can have only one active blueprint.",
            ),
            models.CheckConstraint(
                condition=Q(version__gte=1),
                name="blueprint_version_positive",
                violation_error_message="Blueprint versions start at 1.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.title or 'Blueprint'} v{self.version}"

    @property
    def source_text(self) -> str:
        """The version's text (read from BlueprintText once per instance)."""
        cached = self.__dict__.get("_source_text")
        if cached is None:
            cached = self.__dict__["_source_text"] = BlueprintText.objects.read(self.pk).text
        return cached


@dataclass
class StoredText:
    """A version's text as read back (blueprints.texts stores it)."""

    blueprint_id: int
    text: str
    base_id: int  # the version whose whole text the pieces refer to (itself when stored whole)
    pieces: list | None  # None: stored whole


class BlueprintTextManager(models.Manager):
    def read(self, blueprint_id: int) -> StoredText:
        """The text of a version: its row, plus its base's row when it is stored as pieces."""
        row = self.filter(blueprint_id=blueprint_id).values_list("text", "base_id", "pieces").first()
        if row is None:
            return StoredText(blueprint_id, "", blueprint_id, None)
        text, base_id, pieces = row
        if pieces is None:
            return StoredText(blueprint_id, text, blueprint_id, None)
        base = self.filter(blueprint_id=base_id).values_list("text", flat=True).first() or ""
        return StoredText(
            blueprint_id,
            "".join(base[p[0] : p[1]] if p.__class__ is list else p for p in pieces),
            base_id,
            pieces,
        )


class BlueprintText(models.Model):
    """The text of a blueprint version, in a table of its own: written once, never updated. Either the
    whole text (`text`), or — a version that re-uses most of an earlier one — `pieces` of the text of
    `base` (a version stored whole): [start, end] ranges of it and new strings, in order
    (blueprints.texts)."""

    blueprint = models.OneToOneField(
        Blueprint, on_delete=models.CASCADE, primary_key=True, related_name="text"
    )
    text = models.TextField(blank=True)
    base = models.ForeignKey(
        Blueprint,
        null=True,
        blank=True,
        on_delete=models.RESTRICT,
        related_name="+",
        help_text="The version whose whole text `pieces` refer to.",
    )
    pieces = models.JSONField(null=True, blank=True)

    objects = BlueprintTextManager()

    def __str__(self) -> str:
        return f"Text of blueprint {self.blueprint_id} ({len(self.text):,} characters)"


class PlanLayout(models.Model):
    """The plan tree of one blueprint version, in one row: for every node in document order its id,
    parent, offsets into that version's text (`text[start:end]` is its section), level, depth, origin,
    title, anchor, hashes and how it changed against the previous version (blueprints.layout.Layout
    encodes `data`). A re-ingest writes one new row instead of re-pointing and shifting every
    PlanNode; older versions stay viewable with their own offsets.

    `statements`: what the version's text states about dependencies, by the node whose own text states
    it ({node id: [[kind, [reference, …]], …]}, blueprints.graph), so a re-ingest reads the text again
    only in the sections that changed, and resolves the rest as it stands. Null when tasks were not
    generated for this version's whole tree; `policy` is the plan-order policy they were generated with."""

    blueprint = models.OneToOneField(
        Blueprint, on_delete=models.CASCADE, primary_key=True, related_name="layout"
    )
    count = models.PositiveIntegerField(default=0, help_text="Number of nodes.")
    data = models.BinaryField()
    statements = models.JSONField(null=True, blank=True)
    policy = models.CharField(max_length=20, blank=True)

    def __str__(self) -> str:
        return f"Layout of blueprint {self.blueprint_id} ({self.count} nodes)"


class IngestionJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    TRANSITIONS = {
        Status.QUEUED: frozenset({Status.RUNNING, Status.FAILED}),
        Status.RUNNING: frozenset({Status.SUCCEEDED, Status.FAILED}),
        Status.SUCCEEDED: frozenset(),
        Status.FAILED: frozenset({Status.QUEUED}),
    }

    project = models.ForeignKey("autopilot.Project", on_delete=models.CASCADE, related_name="ingestion_jobs")
    blueprint = models.ForeignKey(
        Blueprint,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="ingestion_jobs",
        help_text="The version this job created (set when it succeeds).",
    )
    title = models.CharField(max_length=300, blank=True)
    source_text = models.TextField(blank=True, help_text="The submitted text, kept until the job succeeds.")
    size_bytes = models.PositiveBigIntegerField(default=0)
    generate_tasks = models.BooleanField(default=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    stage = models.CharField(max_length=50, blank=True)
    progress = models.FloatField(default=0, help_text="0.0 – 1.0")
    counts = models.JSONField(default=dict, blank=True)
    diff = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    elapsed_s = models.FloatField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(progress__gte=0) & Q(progress__lte=1),
                name="ingestion_progress_range",
                violation_error_message="Progress must be between 0 and 1.",
            ),
        ]

    def __str__(self) -> str:
        return f"Ingestion #{self.pk} for project {self.project_id} ({self.status})"


class PlanNode(models.Model):
    """A node of a project's plan tree. Keeps its identity across versions while its anchor and
    content match. Which versions contain it, and where, is in each version's PlanLayout; the row
    holds what is stable (identity, content hashes, status, priority, …) and is written only when
    the node is added, changed, moved or removed. `blueprint`, `order`, `start`, `end` and `change`
    are as of that last write: `blueprint` is the version that wrote it, whose text `start`/`end`
    index. Current positions come from the active version's layout (blueprints.layout)."""

    class Kind(models.TextChoices):
        PHASE = "phase", "Phase"
        EPIC = "epic", "Epic"
        FEATURE = "feature", "Feature"
        STORY = "story", "Story"
        TASK_SPEC = "task_spec", "Task spec"

    class Origin(models.TextChoices):
        HEADING = "heading", "Heading"
        CHECKLIST = "checklist", "Checklist item"

    class Status(models.TextChoices):
        TODO = "todo", "To do"
        IN_PROGRESS = "in_progress", "In progress"
        DONE = "done", "Done"
        ARCHIVED = "archived", "Archived"

    TRANSITIONS = {
        Status.TODO: frozenset({Status.IN_PROGRESS, Status.DONE, Status.ARCHIVED}),
        Status.IN_PROGRESS: frozenset({Status.TODO, Status.DONE, Status.ARCHIVED}),
        Status.DONE: frozenset({Status.TODO, Status.IN_PROGRESS, Status.ARCHIVED}),
        Status.ARCHIVED: frozenset({Status.TODO}),
    }

    class Change(models.TextChoices):
        ADDED = "added", "Added"
        UNCHANGED = "unchanged", "Unchanged"
        CHANGED = "changed", "Changed"
        MOVED = "moved", "Moved"
        REMOVED = "removed", "Removed"

    class Risk(models.TextChoices):
        LOW = "low", "Low"
        MEDIUM = "medium", "Medium"
        HIGH = "high", "High"

    project = models.ForeignKey("autopilot.Project", on_delete=models.CASCADE, related_name="plan_nodes")
    blueprint = models.ForeignKey(
        Blueprint,
        on_delete=models.RESTRICT,
        related_name="nodes",
        help_text="The version that last wrote this row (added, changed or moved the node).",
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    origin = models.CharField(max_length=20, choices=Origin.choices, default=Origin.HEADING)
    level = models.PositiveSmallIntegerField(
        help_text="Markdown heading level; checklist items: parent level + 1."
    )
    depth = models.PositiveSmallIntegerField(default=1, help_text="Depth in the tree (1 = top level).")
    title = models.CharField(max_length=1000)
    anchor = models.CharField(max_length=1000)
    order = models.PositiveIntegerField(help_text="Document order within `blueprint`.")
    start = models.PositiveIntegerField()
    end = models.PositiveIntegerField()
    content_hash = models.CharField(
        max_length=64, help_text="Hash of the node's own text (its section without subsections)."
    )
    body_hash = models.CharField(
        max_length=64, blank=True, help_text="The same without the heading line (finds renames)."
    )
    checked = models.BooleanField(null=True, blank=True, help_text="Checklist items: done in the spec.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.TODO)
    change = models.CharField(
        max_length=20,
        choices=Change.choices,
        default=Change.ADDED,
        help_text=(
            "How `blueprint` changed the node (removed: archived); against the active version: its layout."
        ),
    )
    priority = models.PositiveSmallIntegerField(default=2)
    risk = models.CharField(max_length=10, choices=Risk.choices, default=Risk.LOW)
    summary = models.TextField(blank=True)
    pinned = models.BooleanField(
        null=True,
        blank=True,
        help_text="Always in every agent's context (conventions, architecture, glossary…). Empty: "
        "decided by the heading's name.",
    )
    difficulty = models.FloatField(default=0)
    failure_count = models.PositiveIntegerField(default=0)
    rework_count = models.PositiveIntegerField(default=0)
    archived_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["blueprint_id", "order"]
        indexes = [
            # Nodes archived by hand (not by an ingestion): a re-ingest leaves them out of the current tree.
            models.Index(
                fields=["project"],
                condition=Q(archived_at__isnull=False) & ~Q(change="removed"),
                name="plannode_archived_by_hand",
            ),
        ]
        constraints = [
            # A project has one current plan tree: its non-archived nodes (the active version's layout).
            models.UniqueConstraint(
                fields=["project", "anchor"],
                condition=Q(archived_at__isnull=True),
                name="plannode_unique_anchor_per_project",
                violation_error_message="Anchors are unique within a project's current plan tree.",
            ),
            models.CheckConstraint(
                condition=Q(end__gte=F("start")),
                name="plannode_end_after_start",
                violation_error_message="A node's end offset cannot precede its start.",
            ),
            models.CheckConstraint(
                condition=Q(priority__lte=5),
                name="plannode_priority_range",
                violation_error_message="Priority is 0–5.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind}: {self.title}"


class Task(models.Model):
    """A unit of work (an "issue"). Exists with or without a blueprint.

    `kind=milestone` tasks are gates the generator adds so that "every task of group B waits for every
    task of group A" costs |A| + |B| edges instead of |A| × |B|: a milestone depends on all of A,
    every task of B depends on the milestone. Milestones are never runnable: `refresh_ready` moves
    them straight from todo to done once all their dependencies are done.
    """

    class Kind(models.TextChoices):
        WORK = "work", "Work"
        MILESTONE = "milestone", "Milestone"

    class Status(models.TextChoices):
        TODO = "todo", "To do"
        READY = "ready", "Ready"
        IN_PROGRESS = "in_progress", "In progress"
        REVIEW = "review", "In review"
        INTEGRATING = "integrating", "Integrating"
        DONE = "done", "Done"
        BLOCKED = "blocked", "Blocked"
        CANCELLED = "cancelled", "Cancelled"

    TRANSITIONS = {
        Status.TODO: frozenset(
            {Status.READY, Status.IN_PROGRESS, Status.BLOCKED, Status.CANCELLED, Status.DONE}
        ),
        Status.READY: frozenset(
            {Status.TODO, Status.IN_PROGRESS, Status.BLOCKED, Status.CANCELLED, Status.DONE}
        ),
        Status.IN_PROGRESS: frozenset(
            {
                Status.READY,
                Status.REVIEW,
                Status.INTEGRATING,
                Status.DONE,
                Status.BLOCKED,
                Status.CANCELLED,
                Status.TODO,
            }
        ),
        Status.REVIEW: frozenset(
            {
                Status.INTEGRATING,
                Status.DONE,
                Status.READY,
                Status.TODO,
                Status.IN_PROGRESS,
                Status.BLOCKED,
                Status.CANCELLED,
            }
        ),
        # Integrating: approved (or no review needed) and in the merge queue; done = merged.
        Status.INTEGRATING: frozenset(
            {Status.DONE, Status.READY, Status.REVIEW, Status.IN_PROGRESS, Status.BLOCKED, Status.CANCELLED}
        ),
        Status.DONE: frozenset({Status.TODO, Status.READY, Status.REVIEW}),
        Status.BLOCKED: frozenset({Status.TODO, Status.READY, Status.CANCELLED, Status.INTEGRATING}),
        Status.CANCELLED: frozenset({Status.TODO}),
    }

    # The named status sets: every view, admin, selector, metric, API filter and service uses these.
    # SATISFIED: a dependency on the task is met: its work is integrated (done). Cancel → remove the
    # dependency to unblock.
    SATISFIED = frozenset({Status.DONE})
    # CLOSED / OPEN: finished for good, or still work to do (the dashboard's and the admin's "open").
    CLOSED = frozenset({Status.DONE, Status.CANCELLED})
    OPEN = frozenset(Status) - CLOSED
    # UNSTARTED: not started yet; readiness moves these between todo and ready. A task in UNSTARTED whose
    # dependencies are all SATISFIED is "ready" (selectors.ready_tasks), before or after the tick marks it.
    UNSTARTED = frozenset({Status.TODO, Status.READY})
    # RUNNABLE: what the tick starts (readiness reconciled first, so the status says dependencies are done).
    RUNNABLE = frozenset({Status.READY})
    # DELIVERED: an agent finished the work (review pending, being integrated, or done).
    DELIVERED = frozenset({Status.REVIEW, Status.INTEGRATING, Status.DONE})
    # One ranking order, best first: priority, learned priority (refine_plan), plan order, id.
    RANKING = ("-priority", "-learned_priority", "plan_order", "id")

    # No single-column FK indexes: task_project_ready / task_unique_source_key lead with project and
    # task_node_status with plan_node (fewer indexes to maintain on bulk generation).
    project = models.ForeignKey(
        "autopilot.Project", on_delete=models.CASCADE, related_name="tasks", db_index=False
    )
    plan_node = models.ForeignKey(
        PlanNode, null=True, blank=True, on_delete=models.SET_NULL, related_name="tasks", db_index=False
    )
    title = models.CharField(max_length=500)
    body = models.TextField(blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.WORK)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.TODO)
    priority = models.PositiveSmallIntegerField(default=2, help_text="0 (lowest) – 5 (highest)")
    complexity = models.PositiveSmallIntegerField(default=3, help_text="1 – 10")
    learned_priority = models.FloatField(default=0)
    plan_order = models.PositiveIntegerField(default=0, help_text="Position in the plan; lower runs first.")
    attempts = models.PositiveIntegerField(default=0)
    rework_count = models.PositiveIntegerField(default=0)
    needs_review = models.BooleanField(
        default=False, help_text="Its spec section changed since the task was made."
    )
    removed_from_spec = models.BooleanField(default=False)
    source_key = models.CharField(
        max_length=200,
        blank=True,
        help_text="Key of the generator that made it; keeps generation idempotent.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    readiness_mark = models.IntegerField(
        default=1,
        db_default=1,
        editable=False,
        help_text="Readiness bookkeeping (blueprints.readiness): 1 = to re-derive (new, or it or a "
        "dependency changed), 0 = up to date, negative = being re-derived by a tick.",
    )

    # Values of `readiness_mark` (a negative value is the token of the tick re-deriving the task).
    READINESS_CURRENT = 0
    READINESS_STALE = 1

    class Meta:
        ordering = ["project_id", "plan_order", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(priority__lte=5),
                name="task_priority_range",
                violation_error_message="Priority is 0–5.",
            ),
            models.CheckConstraint(
                condition=Q(complexity__gte=1) & Q(complexity__lte=10),
                name="task_complexity_range",
                violation_error_message="Complexity is 1–10.",
            ),
            models.UniqueConstraint(
                fields=["project", "source_key"],
                condition=~Q(source_key=""),
                name="task_unique_source_key",
                violation_error_message="A task was already generated from this source.",
            ),
        ]
        indexes = [
            # The manager walks it per project in ranking order (manager.ranking.ranked_candidates).
            models.Index(
                fields=["project", "status", "kind", "-priority", "-learned_priority", "plan_order"],
                name="task_project_ready",
            ),
            models.Index(fields=["plan_node", "status"], name="task_node_status"),
            models.Index(fields=["readiness_mark", "project"], name="task_readiness_mark"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}"


class TaskDependency(models.Model):
    """`task` depends on `depends_on` (same project, no cycles: enforced by the service)."""

    class Source(models.TextChoices):
        MANUAL = "manual", "Added by hand"
        TEXT = "text", "From the spec text"
        POLICY = "policy", "From the plan-order policy"

    # Covered by dependency_unique_pair (task, depends_on) and dependency_reverse (depends_on, task).
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="dependency_links", db_index=False)
    depends_on = models.ForeignKey(
        Task, on_delete=models.CASCADE, related_name="dependent_links", db_index=False
    )
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.MANUAL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["task_id", "depends_on_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["task", "depends_on"],
                name="dependency_unique_pair",
                violation_error_message="This dependency already exists.",
            ),
            models.CheckConstraint(
                condition=~Q(task=F("depends_on")),
                name="dependency_not_self",
                violation_error_message="A task cannot depend on itself.",
            ),
        ]
        indexes = [models.Index(fields=["depends_on", "task"], name="dependency_reverse")]

    def __str__(self) -> str:
        return f"{self.task_id} → {self.depends_on_id}"

    @property
    def project(self):
        """The project of both tasks (permission checks look for `obj.project`)."""
        return self.task.project


class SectionSearchEntry(models.Model):
    """A heading node's row in the spec search index (blueprints.search): its title and own text (the
    section without its subsections) as of `content_hash`. Written by ingestion only for the nodes it
    adds, changes or moves; removed nodes' rows are deleted. The full-text index over it is
    vendor-specific and created by the migration: an FTS5 external-content table kept in sync by
    triggers on SQLite, a weighted `document` tsvector column with a GIN index on PostgreSQL."""

    node = models.OneToOneField(PlanNode, on_delete=models.CASCADE, primary_key=True, related_name="+")
    project = models.ForeignKey("autopilot.Project", on_delete=models.CASCADE, related_name="+")
    content_hash = models.CharField(max_length=64)
    title = models.TextField(blank=True)
    body = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"Search entry of node {self.node_id}"


class BlueprintSectionSummary(models.Model):
    """A summary of a plan node's own text, cached by the content it summarizes (blueprints.summaries):
    a re-ingest that leaves a section unchanged keeps its summaries; a changed section gets new ones."""

    class Kind(models.TextChoices):
        EXTRACTIVE = "extractive", "Extractive (first sentences and key bullets)"
        LLM = "llm", "Written by the manager-role model"

    node = models.ForeignKey(PlanNode, on_delete=models.CASCADE, related_name="section_summaries")
    content_hash = models.CharField(max_length=64)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.EXTRACTIVE)
    text = models.TextField()
    model = models.CharField(max_length=200, blank=True, help_text="The model that wrote it (kind llm).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["node_id", "kind"]
        constraints = [
            models.UniqueConstraint(
                fields=["node", "content_hash", "kind"],
                name="section_summary_unique",
                violation_error_message="This section already has a summary of that kind for its content.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} summary of node {self.node_id}"


class SummaryJob(models.Model):
    """A run of the section summarizer over a project's current plan tree (runs.section_summaries):
    extractive, or by the manager-role model in batches. Its progress is saved and pushed live like an
    ingestion job's."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    TRANSITIONS = {
        Status.QUEUED: frozenset({Status.RUNNING, Status.FAILED}),
        Status.RUNNING: frozenset({Status.SUCCEEDED, Status.FAILED}),
        Status.SUCCEEDED: frozenset(),
        Status.FAILED: frozenset(),
    }

    project = models.ForeignKey("autopilot.Project", on_delete=models.CASCADE, related_name="summary_jobs")
    kind = models.CharField(
        max_length=20,
        choices=BlueprintSectionSummary.Kind.choices,
        default=BlueprintSectionSummary.Kind.EXTRACTIVE,
    )
    model = models.CharField(max_length=200, blank=True, help_text="The model used (kind llm).")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    stage = models.CharField(max_length=50, blank=True)
    progress = models.FloatField(default=0, help_text="0.0 – 1.0")
    counts = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(progress__gte=0) & Q(progress__lte=1),
                name="summary_job_progress_range",
                violation_error_message="Progress must be between 0 and 1.",
            ),
        ]

    def __str__(self) -> str:
        return f"Summaries #{self.pk} for project {self.project_id} ({self.kind}, {self.status})"
