"""The context bundle: everything an agent receives for a task run, as labelled parts in a fixed order,
within a token budget. `runs.context.build_prompt` (what every backend gets) renders it.

Parts, in this order (a part with nothing to say is left out):

  task           the task: "Task #N: title", its spec section (anchor), the section's text, and its
                 acceptance criteria (the section's checklist items)
  ancestry       its place in the spec: the ancestor titles (phase → epic → feature) and each
                 ancestor's introduction (its text before its first child heading), capped
  pinned         pinned project context (blueprints.pinning): nodes with `PlanNode.pinned` True, plus —
                 when `pinned` is None — headings at depth 1–2 named like its DEFAULT_PINNED_TITLES
                 (conventions, architecture, glossary, constraints, …); `pinned` False never
  related        sections this one links to or names: markdown anchors `[..](#anchor)` / `#anchor`,
                 "see §N.N" / "see <title>", and the sections of the tasks it depends on
  relevant       the top few other sections by full-text relevance (blueprints.search)
  prerequisites  for each dependency that is integrated: its result summary, changed files, merge commit
  failure        the previous attempt's failure: reason, failing tests, output tail
  reviews        review comments that requested changes
  conflict       the latest failed merge: conflicting files and hunks, or the failing tests' output
  snapshot       a short project snapshot (runs.snapshot)
  omitted        what the budget left out (only when something was)
  instruction    the run's own instruction (the tick's TASK_INSTRUCTION or a human's prompt)

Budget: tokens are estimated as characters / 4 (rounded up). There is no offline token counter for
Anthropic models (counting needs an API call), and one estimate for every backend keeps the bundle the
same whichever agent runs it. The budget is `Project.context_budget_tokens`, or by default a
conservative share (BUNDLE_SHARE) of the model's context window (CONTEXT_WINDOWS, by model family),
capped at MAX_DEFAULT_BUDGET.

When the bundle is over budget, these steps are applied in DROP_ORDER until it fits: a part is first
replaced by its summarized form (sections by their summaries, output by a shorter tail) where it has
one, then dropped. The snapshot goes first, then the relevant sections (neither is about the task
itself), then the spec context (related, ancestry, pinned), then the prerequisites, and the previous
attempt's failure, review comments and conflict last. The task and the instruction are never
dropped: the task's text is truncated last. Every part left out or summarized is listed in the
`omitted` part of the bundle itself.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from autopilot.models import Event, Project
from blueprints.layout import CHECKLIST, Layout
from blueprints.models import PlanNode, Task, TaskDependency
from blueprints.pinning import pinned_indexes
from blueprints.search import search_sections
from blueprints.summaries import summary_for
from blueprints.tree import current_tree
from runs.backends.test_worker import parse_test_output
from runs.models import ExecutionRun, ExecutionStep, Integration, TaskReview
from runs.snapshot import snapshot_text

CHARS_PER_TOKEN = 4

# Context windows (tokens) by model family: the first pattern that matches the model name (without
# its "provider:" prefix) wins.
CONTEXT_WINDOWS: tuple[tuple[str, int], ...] = (
    (r"^claude-.*\[1m\]", 1_000_000),
    (r"^claude-", 200_000),
    (r"^(gpt-5|codex)", 400_000),
    (r"^gpt-4\.1", 1_000_000),
    (r"^(gpt-4o|gpt-4-turbo|o1|o3|o4)", 128_000),
    (r"^gpt-4", 8_000),
    (r"^gpt-3\.5", 16_000),
)
UNKNOWN_MODEL_WINDOW = 32_000
BUNDLE_SHARE = 0.15  # of the window: the rest is the agent's own work (files read, tool output, turns)
MAX_DEFAULT_BUDGET = 24_000
MIN_BUDGET = 500

# Per-part caps (characters), before the budget is applied.
INTRO_CAP = 1_500
PINNED_CAP = 6_000
PINNED_MAX = 6
RELATED_CAP = 4_000
RELATED_MAX = 6
RELEVANT_MAX = 3
SUMMARY_CAP = 400
PREREQUISITES_MAX = 10
FILES_MAX = 20
TAIL_CAP = 3_000
SHORT_TAIL_CAP = 600
CONFLICT_CAP = 4_000
REVIEWS_MAX = 3

ORDER = (
    "task",
    "ancestry",
    "pinned",
    "related",
    "relevant",
    "prerequisites",
    "failure",
    "reviews",
    "conflict",
    "snapshot",
    "omitted",
    "instruction",
)
LABELS = {
    "task": "Task",
    "ancestry": "Place in the spec",
    "pinned": "Pinned project context",
    "related": "Related sections",
    "relevant": "Other relevant sections",
    "prerequisites": "Prerequisites' outcomes",
    "failure": "Previous attempt",
    "reviews": "Review comments",
    "conflict": "Merge conflict",
    "snapshot": "Project snapshot",
    "omitted": "Left out to fit the context budget",
    "instruction": "Instruction",
}
# (part, action) applied in this order while the bundle is over budget; then the task is truncated.
DROP_ORDER: tuple[tuple[str, str], ...] = (
    ("snapshot", "drop"),
    ("relevant", "drop"),
    ("related", "summarize"),
    ("related", "drop"),
    ("ancestry", "summarize"),
    ("pinned", "summarize"),
    ("ancestry", "drop"),
    ("pinned", "drop"),
    ("prerequisites", "summarize"),
    ("prerequisites", "drop"),
    ("reviews", "summarize"),
    ("failure", "summarize"),
    ("conflict", "summarize"),
    ("reviews", "drop"),
    ("conflict", "drop"),
    ("failure", "drop"),
)
INCLUDED, SUMMARIZED, DROPPED, TRUNCATED = "included", "summarized", "dropped", "truncated"


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def context_window(model: str) -> int:
    name = (model or "").split(":", 1)[-1].strip().lower()
    for pattern, window in CONTEXT_WINDOWS:
        if re.search(pattern, name):
            return window
    return UNKNOWN_MODEL_WINDOW


def default_budget(model: str) -> int:
    return min(MAX_DEFAULT_BUDGET, int(context_window(model) * BUNDLE_SHARE))


def budget_for(run: ExecutionRun) -> int:
    configured = getattr(run.project, "context_budget_tokens", None)
    return max(MIN_BUDGET, configured) if configured else default_budget(run.model)


@dataclass
class Part:
    name: str
    body: str
    summary: str | None = None  # the shorter form used before the part is dropped (None: none)
    state: str = INCLUDED
    full_tokens: int = 0  # the size before any summarizing, truncating or dropping

    @property
    def label(self) -> str:
        return LABELS[self.name]

    @property
    def text(self) -> str:
        """The part as it appears in the prompt (heading and body); "" when dropped."""
        if self.state == DROPPED:
            return ""
        return f"## {self.label}\n\n{self.body.strip()}"

    def as_dict(self) -> dict:
        text = self.text
        return {
            "name": self.name,
            "label": self.label,
            "state": self.state,
            "chars": len(text),
            "tokens": estimate_tokens(text),
            "full_tokens": self.full_tokens,
            "text": text,
        }


@dataclass
class Bundle:
    parts: list[Part]
    budget_tokens: int
    omitted: list[str] = field(default_factory=list)

    @property
    def included(self) -> list[Part]:
        return [p for p in self.parts if p.state != DROPPED]

    @property
    def prompt(self) -> str:
        return "\n\n".join(p.text for p in self.included)

    @property
    def tokens(self) -> int:
        return estimate_tokens(self.prompt)

    def part(self, name: str) -> Part | None:
        return next((p for p in self.parts if p.name == name), None)

    def stored(self) -> list[dict]:
        return [p.as_dict() for p in self.parts]


def join_parts(parts: list[dict]) -> str:
    """The prompt as sent, from stored parts (`ExecutionRun.prompt_parts`)."""
    return "\n\n".join(p["text"] for p in parts if p.get("state") != DROPPED and p.get("text"))


# --- building -----------------------------------------------------------------------------------


def build_bundle(run: ExecutionRun, *, budget_tokens: int | None = None) -> Bundle | None:
    """The bundle of a task run (None for a run without a task: its prompt is sent as written)."""
    if not run.task_id:
        return None
    task = run.task
    budget = budget_tokens if budget_tokens is not None else budget_for(run)
    spec = Spec.load(task)
    parts = [
        _task_part(task, spec),
        _ancestry_part(spec),
        _pinned_part(task, spec),
    ]
    related, named = _related_part(task, spec)
    parts += [
        related,
        _relevant_part(run.project, task, spec, exclude=named),
        _prerequisites_part(task),
        *_attempt_parts(run, task),
        _snapshot_part(run),
        Part("instruction", _instruction(run, task)),
    ]
    parts = [p for p in parts if p is not None and p.body.strip()]
    for p in parts:
        p.full_tokens = estimate_tokens(p.text)
    return fit(Bundle(parts=parts, budget_tokens=budget))


def fit(bundle: Bundle) -> Bundle:
    """Apply DROP_ORDER until the bundle fits its budget, list what was left out, truncate the task last."""
    budget = bundle.budget_tokens
    by_name = {p.name: p for p in bundle.parts}
    for name, action in DROP_ORDER:
        if bundle.tokens + _omitted_tokens(bundle.omitted) <= budget:
            break
        part = by_name.get(name)
        if part is None or part.state == DROPPED:
            continue
        if action == "summarize":
            if part.summary is None or part.state == SUMMARIZED or len(part.summary) >= len(part.body):
                continue
            part.body, part.state = part.summary, SUMMARIZED
        else:
            part.state = DROPPED
        bundle.omitted.append(f"{part.label}: {'summarized' if action == 'summarize' else 'left out'}")
    if bundle.omitted:
        omitted = _omitted_part(bundle.omitted)
        omitted.full_tokens = estimate_tokens(omitted.text)
        bundle.parts.insert(_position(bundle.parts, "omitted"), omitted)
    over = bundle.tokens - budget
    task = by_name.get("task")
    if over > 0 and task is not None:
        keep = max(200, len(task.body) - over * CHARS_PER_TOKEN - 100)
        if keep < len(task.body):
            note = f"\n\n[… the section is truncated here: {len(task.body) - keep:,} more characters]"
            task.body = task.body[:keep] + note
            task.state = TRUNCATED
    return bundle


def _omitted_part(lines: list[str]) -> Part:
    return Part("omitted", "\n".join(f"- {line}" for line in lines))


def _omitted_tokens(lines: list[str]) -> int:
    """What the `omitted` part will add to the prompt (with its separator)."""
    return estimate_tokens("\n\n" + _omitted_part(lines).text) if lines else 0


def _position(parts: list[Part], name: str) -> int:
    rank = ORDER.index(name)
    for i, p in enumerate(parts):
        if ORDER.index(p.name) > rank:
            return i
    return len(parts)


# --- the spec: the active version's tree, read once per bundle -------------------------------------


class Spec:
    """The task's node in the active blueprint version: text, layout and the node's index (i is None
    when the task has no node, or its node is not in the active version)."""

    def __init__(self, text: str = "", layout: Layout | None = None, i: int | None = None, project_id=0):
        self.text = text
        self.layout = layout
        self.i = i
        self.project_id = project_id
        self.archived: frozenset[int] = frozenset()
        self.pinned: list[int] | None = None
        self._index: dict[int, int] | None = None

    @classmethod
    def load(cls, task: Task) -> Spec:
        if not task.plan_node_id:
            return cls(project_id=task.project_id)
        tree = current_tree(task.project_id)
        if tree is None or task.plan_node_id in tree.archived:
            return cls(project_id=task.project_id)
        spec = cls(tree.text, tree.layout, None, task.project_id)
        spec.archived = tree.archived
        spec.i = spec.index.get(task.plan_node_id)
        return spec

    @property
    def index(self) -> dict[int, int]:
        if self._index is None:
            self._index = self.layout.index() if self.layout is not None else {}
        return self._index

    def section(self, i: int, cap: int) -> str:
        start, end = self.layout.starts[i], self.layout.ends[i]
        return self.text[start : min(end, start + cap)]

    def intro(self, i: int, cap: int) -> str:
        """A node's text before its first child heading (without its own heading line)."""
        layout = self.layout
        end = layout.ends[i]
        for j in range(i + 1, layout.subtree_end(i)):
            if not layout.flags[j] & CHECKLIST:
                end = layout.starts[j]
                break
        text = self.text[layout.starts[i] : min(end, layout.starts[i] + cap + 400)]
        return _without_heading(text)[:cap].strip()

    def ancestors(self, i: int) -> list[int]:
        found = []
        p = self.layout.parents[i]
        while p >= 0:
            found.append(p)
            p = self.layout.parents[p]
        return found[::-1]

    def checklist(self, i: int) -> list[str]:
        layout = self.layout
        items = []
        for j in range(i + 1, layout.subtree_end(i)):
            if layout.flags[j] & CHECKLIST:
                mark = "[x]" if layout.checked(j) else "[ ]"
                items.append(
                    f"{'  ' * max(0, layout.depths[j] - layout.depths[i] - 1)}- {mark} {layout.titles[j]}"
                )
        return items

    def describe(self, i: int) -> str:
        return f"{self.layout.titles[i]} ({self.layout.anchors[i]})"

    def live(self, i: int) -> bool:
        return self.layout.ids[i] not in self.archived


def _without_heading(text: str) -> str:
    first, _, rest = text.partition("\n")
    if first.lstrip().startswith("#"):
        return rest
    second, _, after = rest.partition("\n")
    if second.strip() and set(second.strip()) <= {"=", "-"}:  # a setext heading
        return after
    return text


def summarize(spec: Spec, i: int, cap: int = SUMMARY_CAP) -> str:
    """A section's summary: blueprints.summaries (cached by content hash), else its first sentences."""
    node = PlanNode.objects.filter(pk=spec.layout.ids[i]).first()
    if node is not None:
        return (summary_for(node) or "")[:cap]
    return first_sentences(_without_heading(spec.section(i, cap * 4)), cap)


SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def first_sentences(text: str, cap: int) -> str:
    """The first prose sentences of a text, at most `cap` characters (code and tables skipped)."""
    lines, fenced = [], False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if fenced or not stripped or stripped.startswith(("|", "<", "#")):
            if lines and not stripped:
                break
            continue
        lines.append(stripped)
    prose = " ".join(lines)
    if len(prose) <= cap:
        return prose
    out = ""
    for sentence in SENTENCE_END.split(prose):
        if len(out) + len(sentence) + 1 > cap:
            break
        out = f"{out} {sentence}".strip()
    return out or prose[: cap - 1] + "…"


# --- the parts ------------------------------------------------------------------------------------


def _task_part(task: Task, spec: Spec) -> Part:
    lines = [f"Task #{task.pk}: {task.title}"]
    if spec.i is not None:
        lines.append(f"Spec section: {spec.describe(spec.i)}")
    elif task.plan_node_id:
        node = PlanNode.objects.filter(pk=task.plan_node_id).values_list("title", "anchor").first()
        if node:
            lines.append(f"Spec section: {node[0]} ({node[1]})")
    body = task.body.strip()
    head = "\n".join(lines)
    text = f"{head}\n\n{body}" if body else head
    if spec.i is not None:
        items = spec.checklist(spec.i)
        if items:
            text += "\n\nAcceptance criteria:\n" + "\n".join(items)
    return Part("task", text)


def _ancestry_part(spec: Spec) -> Part | None:
    if spec.i is None:
        return None
    chain = spec.ancestors(spec.i)
    if not chain:
        return None
    path = " → ".join(spec.layout.titles[a] for a in chain)
    full, short = [path], [path]
    for a in chain:
        intro = spec.intro(a, INTRO_CAP)
        if intro:
            full.append(f"### {spec.describe(a)}\n\n{intro}")
            summary = first_sentences(intro, SUMMARY_CAP)
            if summary:
                short.append(f"### {spec.describe(a)}\n\n{summary}")
    return Part("ancestry", "\n\n".join(full), summary="\n\n".join(short))


def _pinned(spec: Spec) -> list[int]:
    """The project's pinned sections (read once per bundle)."""
    if spec.layout is None:
        return []
    if spec.pinned is None:
        spec.pinned = pinned_indexes(spec.project_id, spec.layout, spec.archived)
    return spec.pinned


def _pinned_part(task: Task, spec: Spec) -> Part | None:
    if spec.layout is None:
        return None
    own = set(spec.ancestors(spec.i)) | {spec.i} if spec.i is not None else set()
    chosen = [i for i in _pinned(spec) if i not in own][:PINNED_MAX]
    return _sections_part("pinned", spec, chosen, PINNED_CAP)


def _sections_part(name: str, spec: Spec, indexes: list[int], cap: int) -> Part | None:
    if not indexes:
        return None
    full, short = [], []
    for i in indexes:
        text = _without_heading(spec.section(i, cap + 200)).strip()[:cap]
        full.append(f"### {spec.describe(i)}\n\n{text}")
        short.append(f"### {spec.describe(i)}\n\n{summarize(spec, i)}")
    return Part(name, "\n\n".join(full), summary="\n\n".join(short))


LINK_RE = re.compile(r"\]\(#([^)\s]+)\)|(?<![\w&#])#([a-z0-9][\w/-]*[a-z0-9])", re.I)
SEE_RE = re.compile(r"\bsee\s+(?:§\s*([\d.]*\d)|(?:section\s+)?[\"“]?([A-Z][^.;,\n)\"”]{2,80}))", re.I)
SECTION_SIGN_RE = re.compile(r"§\s*([\d.]*\d)")


def linked_indexes(spec: Spec, i: int) -> list[int]:
    """Sections a section's own text links to or names: `[..](#anchor)`, `#anchor`, "see §N.N",
    "see Title" (in the order they appear; the section itself and its ancestors excluded)."""
    layout = spec.layout
    text = spec.text[layout.starts[i] : layout.ends[i]]
    links = [(m.group(1) or m.group(2)).lower() for m in LINK_RE.finditer(text)]
    signs = [m.group(1).rstrip(".") for m in SECTION_SIGN_RE.finditer(text)]
    sees = [m.group(2).strip().lower() for m in SEE_RE.finditer(text) if m.group(2)]
    if not (links or signs or sees):
        return []  # most sections name no other: the lookups over the whole tree are not built
    anchors: dict[str, int] = {}
    tails: dict[str, int] = {}
    numbers: dict[str, int] = {}
    titles: dict[str, int] = {}
    for j, (anchor, title) in enumerate(zip(layout.anchors, layout.titles, strict=True)):
        anchors.setdefault(anchor.lower(), j)
        tails.setdefault(anchor.rsplit("/", 1)[-1].lower(), j)
        titles.setdefault(title.strip().lower(), j)
        number = title.split(" ", 1)[0].rstrip(".")
        if number[:1].isdigit() and set(number) <= set("0123456789."):
            numbers.setdefault(number, j)
    found: list[int] = [anchors.get(ref, tails.get(ref, -1)) for ref in links]
    found += [numbers.get(number, -1) for number in signs]
    for name in sees:
        j = titles.get(name, -1)
        while j < 0 and " " in name:  # "see Storage for details": the longest title at the start
            name = name.rsplit(" ", 1)[0]
            j = titles.get(name, -1)
        found.append(j)
    skip = set(spec.ancestors(i)) | {i}
    out: list[int] = []
    for j in found:
        if j >= 0 and j not in skip and j not in out and spec.live(j):
            out.append(j)
    return out


def _related_part(task: Task, spec: Spec) -> tuple[Part | None, set[int]]:
    if spec.layout is None:
        return None, set()
    chosen = linked_indexes(spec, spec.i) if spec.i is not None else []
    dependency_nodes = TaskDependency.objects.filter(
        task=task, depends_on__plan_node__isnull=False
    ).values_list("depends_on__plan_node_id", flat=True)
    for node_id in dependency_nodes:
        j = spec.index.get(node_id)
        if j is not None and j != spec.i and j not in chosen and spec.live(j):
            chosen.append(j)
    pinned = set(_pinned(spec))
    chosen = [j for j in chosen if j not in pinned][:RELATED_MAX]
    named = {spec.layout.ids[j] for j in chosen} | {spec.layout.ids[j] for j in pinned}
    if spec.i is not None:
        named |= {spec.layout.ids[spec.i], *(spec.layout.ids[a] for a in spec.ancestors(spec.i))}
    return _sections_part("related", spec, chosen, RELATED_CAP), named


def relevance_hits(project: Project, query: str, exclude_ids: set[int]) -> list:
    """The top sections by full-text relevance (blueprints.search.search_sections)."""
    if not query.strip():
        return []
    return list(search_sections(project, query, limit=RELEVANT_MAX, exclude_ids=tuple(exclude_ids)))


def _relevant_part(project: Project, task: Task, spec: Spec, exclude: set[int]) -> Part | None:
    if spec.layout is None:
        return None
    hits = relevance_hits(project, task.title, exclude)
    if not hits:
        return None
    blocks = []
    for hit in hits[:RELEVANT_MAX]:
        j = spec.index.get(hit.node_id)
        text = summarize(spec, j) if j is not None else hit.snippet
        blocks.append(f"### {hit.title} ({hit.anchor})\n\n{text}")
    return Part("relevant", "\n\n".join(blocks))


def _files(summary: dict | None) -> list[str]:
    files = [f.get("path", "") for f in (summary or {}).get("files", [])]
    return [f for f in files if f]


def _prerequisites_part(task: Task) -> Part | None:
    deps = list(
        Task.objects.filter(dependent_links__task=task, status__in=Task.SATISFIED)
        .order_by("plan_order", "pk")
        .only("pk", "title")[:PREREQUISITES_MAX]
    )
    if not deps:
        return None
    merged = {}
    for integration in Integration.objects.filter(task__in=deps, status=Integration.Status.MERGED).order_by(
        "task_id", "-finished_at", "-pk"
    ):
        merged.setdefault(integration.task_id, integration)
    runs = {}
    for run in (
        ExecutionRun.objects.filter(task__in=deps, status=ExecutionRun.Status.SUCCEEDED)
        .order_by("task_id", "-ended_at", "-pk")
        .only("task_id", "result_summary", "diff_summary")
    ):
        runs.setdefault(run.task_id, run)
    full, short = [], []
    for dep in deps:
        integration, run = merged.get(dep.pk), runs.get(dep.pk)
        files = _files(integration.diff_summary if integration else None) or _files(
            run.diff_summary if run else None
        )
        lines = [f"### Task #{dep.pk}: {dep.title}"]
        if integration is not None and integration.merge_commit:
            lines.append(f"Merge commit: {integration.merge_commit}")
        if run is not None and run.result_summary.strip():
            lines.append(f"Result: {run.result_summary.strip()[:1500]}")
        if files:
            more = f" (+{len(files) - FILES_MAX} more)" if len(files) > FILES_MAX else ""
            lines.append("Changed files: " + ", ".join(files[:FILES_MAX]) + more)
        full.append("\n".join(lines))
        short.append("\n".join(lines[:2]))
    return Part("prerequisites", "\n\n".join(full), summary="\n\n".join(short))


def _tail(text: str, cap: int) -> str:
    text = (text or "").strip()
    return text if len(text) <= cap else "…" + text[-cap:]


def _attempt_parts(run: ExecutionRun, task: Task) -> list[Part | None]:
    return [_failure_part(run, task), _reviews_part(task), _conflict_part(run, task)]


def _failure_part(run: ExecutionRun, task: Task) -> Part | None:
    earlier = ExecutionRun.objects.filter(task=task, status__in=ExecutionRun.TERMINAL).exclude(pk=run.pk)
    if run.pk:
        earlier = earlier.filter(pk__lt=run.pk)
    previous = earlier.order_by("-pk").first()
    if previous is None or previous.status not in (ExecutionRun.Status.FAILED, ExecutionRun.Status.TIMED_OUT):
        return None
    reason = (previous.status_reason or previous.error or "").strip()
    head = [
        f"Run #{previous.pk} ended {previous.get_status_display().lower()}"
        + (f": {reason}" if reason else "")
    ]
    test = (
        ExecutionStep.objects.filter(run=previous, kind=ExecutionStep.Kind.TEST)
        .order_by("-seq")
        .values_list("output", flat=True)
        .first()
    )
    output = test
    if output is None:
        output = (
            ExecutionStep.objects.filter(run=previous)
            .exclude(output="")
            .order_by("-seq")
            .values_list("output", flat=True)
            .first()
        )
    failing = parse_test_output(test)["failing"] if test else []
    if failing:
        head.append("Failing tests: " + ", ".join(failing[:20]))
    full = list(head)
    if output:
        full.append("Output (tail):\n" + _tail(output, TAIL_CAP))
    short = list(head)
    if output:
        short.append("Output (tail):\n" + _tail(output, SHORT_TAIL_CAP))
    return Part("failure", "\n\n".join(full), summary="\n\n".join(short))


def _reviews_part(task: Task) -> Part | None:
    reviews = list(
        TaskReview.objects.filter(task=task, decision=TaskReview.Decision.CHANGES_REQUESTED)
        .exclude(comment="")
        .order_by("-created_at", "-pk")[:REVIEWS_MAX]
    )
    if not reviews:
        return None
    full = [f"- {r.created_at:%Y-%m-%d %H:%M}: {r.comment.strip()}" for r in reviews]
    return Part("reviews", "\n".join(full), summary=full[0][:SHORT_TAIL_CAP])


START_CONFLICT = "executionrun.start_conflict"


def _conflict_part(run: ExecutionRun, task: Task) -> Part | None:
    latest = Integration.objects.filter(task=task).order_by("-queued_at", "-pk").first()
    started = (
        Event.objects.filter(kind=START_CONFLICT, subject_type="executionrun", subject_id=run.pk)
        .values_list("data", flat=True)
        .first()
        if run.pk
        else None
    )
    markers = []
    if started and started.get("markers_left"):
        files = ", ".join(map(str, started.get("files", [])[:FILES_MAX]))
        markers = [
            "Your branch was brought up to date with the integration branch before you started and "
            f"the merge conflicted: git left conflict markers (<<<<<<< ======= >>>>>>>) in {files}. "
            "Resolve every marker keeping the intent of both sides (the integrated work and yours); "
            "a branch that still has markers is refused by the merge queue."
        ]
    if latest is None or latest.status not in Integration.FAILED:
        if not markers:
            return None
        return Part("conflict", markers[0] + "\n\n" + _tail(started.get("detail", ""), CONFLICT_CAP))
    head = markers + [
        f"Merge #{latest.pk} of {latest.branch} into {latest.target_branch}: "
        f"{latest.get_status_display().lower()}"
    ]
    if latest.status_reason.strip():
        head.append(latest.status_reason.strip())
    if latest.conflict_files:
        head.append("Conflicting files: " + ", ".join(map(str, latest.conflict_files[:FILES_MAX])))
    detail = latest.conflict_detail if latest.status == Integration.Status.CONFLICT else latest.test_output
    full, short = list(head), list(head)
    if detail.strip():
        full.append(_tail(detail, CONFLICT_CAP))
        short.append(_tail(detail, SHORT_TAIL_CAP))
    return Part("conflict", "\n\n".join(full), summary="\n\n".join(short))


def _snapshot_part(run: ExecutionRun) -> Part | None:
    text = snapshot_text(run.project)
    return Part("snapshot", text) if text.strip() else None


def _instruction(run: ExecutionRun, task: Task) -> str:
    instruction = (run.prompt or "").strip()
    if instruction in (task.title.strip(), task.body.strip()):
        return ""
    return instruction


def prompt_as_sent(run: ExecutionRun, redact=None) -> tuple[str, list[dict]]:
    """The prompt a backend receives for a run and its parts as stored on the run
    (`ExecutionRun.prompt_parts`), each part redacted with `redact`. A run without a task: its prompt as
    written, and no parts."""
    redact = redact or (lambda text: text)
    bundle = build_bundle(run)
    if bundle is None:
        return redact(run.prompt), []
    parts = bundle.stored()
    for part in parts:
        part["text"] = redact(part["text"])
        part["chars"], part["tokens"] = len(part["text"]), estimate_tokens(part["text"])
    return join_parts(parts), parts


def sent_prompt(run: ExecutionRun) -> str:
    """What a run's agent received, as stored: its parts joined (a task run), else its prompt once the run
    has started (a run without a task gets its prompt as written); "" before it starts."""
    if run.prompt_parts:
        return join_parts(run.prompt_parts)
    if run.task_id or run.started_at is None:
        return ""
    return run.prompt
