"""`autopilot blueprint ingest|diff|list` and `autopilot plan show`."""

from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from blueprints.models import Blueprint, PlanNode

pytestmark = pytest.mark.django_db

SPEC = (
    "# Phase 1\n\n## Login\n\nPassword login.\n\n- [ ] form\n- [x] hashing\n\n"
    "# Phase 2\n\n## Search\n\nText.\n"
)


def run(command: str, *args: str) -> dict | list:
    out = StringIO()
    call_command(command, *args, "--json", stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_ingest_json_reports_blueprint_version_counts_elapsed(project, tmp_path):
    # given a spec file
    spec = tmp_path / "spec.md"
    spec.write_text(SPEC)
    # when ingested with --json
    data = run("blueprint", "ingest", project.slug, str(spec), "--title", "Plan")
    # then it names the blueprint, the version, the counts and the time measured inside the process
    bp = Blueprint.objects.get(pk=data["blueprint"])
    assert (data["version"], bp.title, bp.status) == (1, "Plan", "active")
    assert data["counts"]["nodes"] == 6 and data["counts"]["headings"] == 4
    assert data["counts"]["tasks"] >= 1 and "dependencies" in data["counts"]
    assert data["elapsed_s"] > 0


def test_no_tasks_then_diff_and_list(project, tmp_path):
    spec = tmp_path / "spec.md"
    spec.write_text(SPEC)
    first = run("blueprint", "ingest", str(project.pk), str(spec), "--no-tasks")
    assert first["counts"]["tasks"] == 0
    spec.write_text(SPEC.replace("Text.", "Text and facets.") + "\n## Export\n")
    run("blueprint", "ingest", str(project.pk), str(spec), "--no-tasks")
    # diff of the active version, and of version 1
    diff = run("blueprint", "diff", str(project.pk))
    assert [d["anchor"] for d in diff["changed"]] == ["phase-2/search"]
    assert [d["anchor"] for d in diff["added"]] == ["phase-2/export"]
    assert run("blueprint", "diff", str(project.pk), "--version", "1")["version"] == 1
    listed = run("blueprint", "list", str(project.pk))
    assert [(b["version"], b["status"]) for b in listed] == [(2, "active"), (1, "superseded")]
    # the human form of diff
    out = StringIO()
    call_command("blueprint", "diff", str(project.pk), stdout=out)
    assert "v1 → v2: 1 added, 1 changed" in out.getvalue() and "~ story" not in out.getvalue()


def test_plan_show_lists_every_node(project, tmp_path):
    spec = tmp_path / "spec.md"
    spec.write_text(SPEC)
    run("blueprint", "ingest", str(project.pk), str(spec), "--no-tasks")
    # when the plan is shown as JSON
    data = run("plan", "show", str(project.pk))
    # then every node is there with its identity, place and offsets
    nodes = data["nodes"]
    assert len(nodes) == PlanNode.objects.filter(project=project).count() == 6
    login = next(n for n in nodes if n["anchor"] == "phase-1/login")
    assert {"id", "parent", "kind", "origin", "level", "title", "anchor", "start", "end"} <= set(login)
    assert SPEC[login["start"] : login["end"]].startswith("## Login")
    form = next(n for n in nodes if n["title"] == "form")
    assert (form["origin"], form["kind"], form["parent"]) == ("checklist", "task_spec", login["id"])
    # and the human form is an indented tree
    out = StringIO()
    call_command("plan", "show", str(project.pk), stdout=out)
    assert "  Login  <epic" in out.getvalue() and "    [x] hashing" in out.getvalue()


@pytest.mark.parametrize(
    "content, message",
    [
        pytest.param(b"", "empty", id="empty"),
        pytest.param(b"\x00\x01binary", "NUL byte at byte offset 0", id="binary"),
        pytest.param(b"# ok\n\xff", "not valid UTF-8", id="bad-utf8"),
        pytest.param(b"prose without any structure", "does not look like a spec", id="not-a-spec"),
    ],
)
def test_bad_files_are_a_clear_error(project, tmp_path, content, message):
    spec = tmp_path / "spec.md"
    spec.write_bytes(content)
    with pytest.raises(CommandError, match=message) as info:
        call_command("blueprint", "ingest", str(project.pk), str(spec), stdout=StringIO())
    assert info.value.returncode == 2
    assert not Blueprint.objects.filter(project=project).exists()


def test_missing_file_and_unknown_version(project):
    with pytest.raises(CommandError, match="No such file"):
        call_command("blueprint", "ingest", str(project.pk), "/nonexistent/spec.md", stdout=StringIO())
    with pytest.raises(CommandError, match="has no active blueprint"):
        call_command("blueprint", "diff", str(project.pk), stdout=StringIO())


@pytest.mark.django_db(transaction=True)
def test_the_console_script_in_a_child_process(subprocess_env, project, tmp_path):
    script = Path(sys.executable).with_name("autopilot")
    if not script.exists():
        pytest.skip("the autopilot console script is not installed in this environment")
    spec = tmp_path / "spec.md"
    spec.write_text(SPEC)
    done = subprocess.run(
        [str(script), "blueprint", "ingest", str(project.pk), str(spec), "--json"],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout.strip().splitlines()[-1])
    assert Blueprint.objects.get(pk=data["blueprint"]).version == 1
    shown = subprocess.run(
        [str(script), "plan", "show", str(project.pk)],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0 and "Phase 1" in shown.stdout
