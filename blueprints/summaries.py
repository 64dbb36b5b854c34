"""Section summaries: a short summary of each plan node's own text, cached by its content hash.

The default summary is extractive (no model): the section's first sentences, then its key bullets
(checklist items and list items), within SUMMARY_CHARS; deterministic, so the same text always gives
the same summary. A summary is stored per (node, content hash, kind): a re-ingest that leaves a section
unchanged keeps its summaries (same hash); a changed section gets a new one on first use. A summary of
kind "llm" (written by the project's manager-role model) is preferred when there is one for the
node's current content.

`summary_for(node)` is what readers use (the context builder, the plan page, the node API): the cached
summary, computed (extractive) and cached when missing. `summarize_project` fills the cache for the
whole current tree (the CLI and the API start it).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django.db import IntegrityError, transaction

from autopilot.models import Project
from blueprints import layout as lay
from blueprints.models import BlueprintSectionSummary, PlanNode
from blueprints.search import own_text, section_body
from blueprints.selectors import active_blueprint, layout_of

SUMMARY_CHARS = 600
MAX_SENTENCES = 3
MAX_BULLETS = 5
BATCH = 500

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
_BULLET = re.compile(r"^\s{0,3}(?:[-*+]|\d{1,3}[.)])\s+(?:\[[ xX]\]\s+)?(.+)$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(])")
_MARKUP = re.compile(r"[*_`]+|</?[A-Za-z][^>\n]{0,200}>|!?\[([^\]\n]{0,200})\]\([^)\n]{0,500}\)")


def _plain(line: str) -> str:
    """A line without inline Markdown emphasis, code ticks, HTML tags and link targets."""
    return " ".join(_MARKUP.sub(lambda m: m.group(1) or "", line).split())


def extractive_summary(body: str, *, limit: int = SUMMARY_CHARS) -> str:
    """The first sentences of the section's prose and its first bullets, at most `limit` characters.

    `body` is the section's own text without its heading line. Code blocks, tables, quotes and headings
    are skipped."""
    text = _FENCE.sub("", body)
    paragraphs: list[str] = []
    bullets: list[str] = []
    current: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        bullet = _BULLET.match(raw)
        if bullet is not None:
            if current:
                paragraphs.append(" ".join(current))
                current = []
            item = _plain(bullet.group(1))
            if item and len(bullets) < MAX_BULLETS:
                bullets.append(item)
        elif not line or line.startswith(("#", "|", ">", "    ", "<")) or set(line) <= set("=-*_ "):
            if current:
                paragraphs.append(" ".join(current))
                current = []
        else:
            current.append(_plain(line))
    if current:
        paragraphs.append(" ".join(current))
    sentences: list[str] = []
    for paragraph in paragraphs:
        for sentence in _SENTENCE_END.split(paragraph):
            if sentence.strip():
                sentences.append(sentence.strip())
            if len(sentences) >= MAX_SENTENCES:
                break
        if len(sentences) >= MAX_SENTENCES:
            break
    parts = [" ".join(sentences)] if sentences else []
    parts += [f"- {b}" for b in bullets]
    summary = ""
    for part in parts:
        candidate = f"{summary}\n{part}" if summary else part
        if len(candidate) > limit:
            if not summary:
                summary = part[: limit - 1].rstrip() + "…"
            break
        summary = candidate
    return summary


def _current(node: PlanNode) -> tuple[str, str] | None:
    """(own text body, content hash) of a node in the active version's tree; None when it is not in it."""
    if node.archived_at is not None:
        return None
    blueprint = active_blueprint(node.project_id)
    layout = layout_of(blueprint)
    if layout is None:
        return None
    try:
        i = layout.ids.index(node.pk)
    except ValueError:
        return None
    own = own_text(layout, blueprint.source_text, i)
    body = own if layout.flags[i] & lay.CHECKLIST else section_body(own)
    return body, layout.hashes[i]


def summary_for(node: PlanNode) -> str:
    """The node's summary for its current content: the model's when there is one, else the extractive
    one (computed and cached when missing). "" for a node not in the current tree."""
    cached = dict(
        BlueprintSectionSummary.objects.filter(node=node, content_hash=node.content_hash).values_list(
            "kind", "text"
        )
    )
    if BlueprintSectionSummary.Kind.LLM in cached:
        return cached[BlueprintSectionSummary.Kind.LLM]
    if BlueprintSectionSummary.Kind.EXTRACTIVE in cached:
        return cached[BlueprintSectionSummary.Kind.EXTRACTIVE]
    current = _current(node)
    if current is None:
        return ""
    body, content_hash = current
    text = extractive_summary(body)
    save_summary(
        node_id=node.pk, content_hash=content_hash, kind=BlueprintSectionSummary.Kind.EXTRACTIVE, text=text
    )
    return text


def save_summary(*, node_id: int, content_hash: str, kind: str, text: str, model: str = "") -> None:
    """Cache a summary (a concurrent writer of the same one wins: the text is the same for extractive)."""
    try:
        with transaction.atomic():
            BlueprintSectionSummary.objects.create(
                node_id=node_id, content_hash=content_hash, kind=kind, text=text, model=model
            )
    except IntegrityError:
        pass


def pending_sections(project: Project | int, kind: str) -> list[tuple[int, str, str, str]]:
    """(node id, content hash, title, body) of the current tree's nodes without a summary of `kind` for
    their current content, in document order."""
    project_id = getattr(project, "pk", project)
    blueprint = active_blueprint(project_id)
    layout = layout_of(blueprint)
    if layout is None:
        return []
    current = set(
        PlanNode.objects.filter(project_id=project_id, archived_at__isnull=True).values_list("id", flat=True)
    )
    done = set(
        BlueprintSectionSummary.objects.filter(node__project_id=project_id, kind=kind).values_list(
            "node_id", "content_hash"
        )
    )
    text = blueprint.source_text
    pending = []
    for i, node_id in enumerate(layout.ids):
        if node_id not in current or (node_id, layout.hashes[i]) in done:
            continue
        own = own_text(layout, text, i)
        body = own if layout.flags[i] & lay.CHECKLIST else section_body(own)
        pending.append((node_id, layout.hashes[i], layout.titles[i], body))
    return pending


def summarize_project(
    project: Project | int, *, progress: Callable[[float, str], None] | None = None
) -> dict:
    """Extractive summaries for every current section that has none for its content (cached ones are
    kept). Returns {"sections": …, "summarized": …, "cached": …}."""
    project_id = getattr(project, "pk", project)
    layout = layout_of(active_blueprint(project_id))
    total = len(layout) if layout is not None else 0
    pending = pending_sections(project_id, BlueprintSectionSummary.Kind.EXTRACTIVE)
    for k in range(0, len(pending), BATCH):
        chunk = pending[k : k + BATCH]
        BlueprintSectionSummary.objects.bulk_create(
            [
                BlueprintSectionSummary(
                    node_id=node_id,
                    content_hash=content_hash,
                    kind=BlueprintSectionSummary.Kind.EXTRACTIVE,
                    text=extractive_summary(body),
                )
                for node_id, content_hash, _title, body in chunk
            ],
            ignore_conflicts=True,
        )
        if progress is not None:
            progress(min(1.0, (k + len(chunk)) / len(pending)), "summarizing")
    return {"sections": total, "summarized": len(pending), "cached": total - len(pending)}
