"""Trajectory doors: REST (export, import, analysis, compare) and CLI (export, import_run, analyze,
replay, compare), with roles enforced."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from runs import services, trajectory
from runs.models import ExecutionRun
from runs.worker import execute_run
from tests.factories import MembershipFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def finished_run(project, script=None):
    script = script or [{"write": "a.txt", "content": "A\n"}, {"run": "cat a.txt"}, {"finish": "done"}]
    run = services.run_create(
        project=project, prompt="make a", run_settings={"script": script}, enqueue=False
    )
    assert execute_run(run.pk) == "succeeded"
    return run


def cli(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_api_export_json_and_rlog(project, viewer):
    run = finished_run(project)
    client = client_for(viewer)
    as_json = client.get(f"/api/runs/{run.pk}/export/?format=json")
    assert as_json.status_code == 200
    assert as_json.json()["schema"] == "autopilot.trajectory"
    assert [s["kind"] for s in as_json.json()["steps"]] == ["write_file", "run_terminal", "finish", "commit"]
    assert 'filename="run-' in as_json["Content-Disposition"]
    as_rlog = client.get(f"/api/runs/{run.pk}/export/?format=rlog")
    assert as_rlog.status_code == 200
    assert as_rlog["Content-Type"].startswith("text/plain")
    assert as_rlog.content.decode().startswith(f"# Autopilot run log — run #{run.pk}")


def test_api_import_creates_a_run_and_needs_operator(project, operator, viewer):
    run = finished_run(project)
    data = trajectory.export_run(run)
    # A viewer may not import
    denied = client_for(viewer).post(
        "/api/runs/import/", {"project": project.pk, "trajectory": data}, format="json"
    )
    assert denied.status_code == 403
    # An operator may, and gets the new run back
    made = client_for(operator).post(
        "/api/runs/import/", {"project": project.slug, "trajectory": data}, format="json"
    )
    assert made.status_code == 201, made.content
    new = ExecutionRun.objects.get(pk=made.json()["id"])
    assert new.status == "succeeded" and new.steps.count() == 4
    # A broken trajectory gets a clear 400 and creates nothing
    count = ExecutionRun.objects.count()
    bad = client_for(operator).post(
        "/api/runs/import/", {"project": project.pk, "trajectory": {"schema": "x"}}, format="json"
    )
    assert bad.status_code == 400 and "Not an Autopilot trajectory" in json.dumps(bad.json())
    assert ExecutionRun.objects.count() == count


def test_api_analysis_and_compare(project, viewer):
    a = finished_run(project)
    b = finished_run(project, [{"write": "a.txt", "content": "A\n"}, {"finish": "short"}])
    client = client_for(viewer)
    analysis = client.get(f"/api/runs/{a.pk}/analysis/").json()
    assert analysis["steps"] == 4 and analysis["files_touched"][0]["path"] == "a.txt"
    assert analysis["commands"] == ["cat a.txt"]
    compared = client.get(f"/api/runs/compare/?a={a.pk}&b={b.pk}")
    assert compared.status_code == 200
    body = compared.json()
    assert body["a"]["run"] == a.pk and body["b"]["run"] == b.pk
    assert body["delta"]["steps"] == -1
    assert client.get("/api/runs/compare/?a=1").status_code == 400


def test_api_hides_runs_of_other_projects(project):
    run = finished_run(project)
    outsider = UserFactory()
    MembershipFactory(project=ProjectFactory(), user=outsider)
    client = client_for(outsider)
    assert client.get(f"/api/runs/{run.pk}/export/").status_code == 404
    assert client.get(f"/api/runs/{run.pk}/analysis/").status_code == 404


def test_cli_export_import_analyze_replay_compare(project, tmp_path, owner):
    run = finished_run(project)
    target = tmp_path / "run.json"

    # export to a file, then import it into another project
    out = json.loads(
        cli("export", str(run.pk), "--format", "json", "-o", str(target), "--json", "--user", owner.username)
    )
    assert out["path"] == str(target) and target.exists()
    other = ProjectFactory()
    MembershipFactory(project=other, user=owner, role="owner")
    imported = json.loads(cli("import_run", str(target), other.slug, "--json", "--user", owner.username))
    assert imported["status"] == "succeeded" and imported["project"] == other.pk

    # rlog to stdout
    assert cli("export", str(run.pk), "--format", "rlog").startswith(f"# Autopilot run log — run #{run.pk}")

    # analyze
    analysis = json.loads(cli("analyze", str(imported["id"]), "--json"))
    assert analysis["steps"] == 4 and analysis["commands"] == ["cat a.txt"]
    assert "tool use:" in cli("analyze", str(run.pk))

    # replay without pauses: the steps in order, one per line
    lines = [json.loads(x) for x in cli("replay", str(imported["id"]), "--speed", "0", "--json").splitlines()]
    assert [x["step"]["kind"] for x in lines] == ["write_file", "run_terminal", "finish", "commit"]
    text = cli("replay", str(run.pk), "--speed", "0")
    assert "[1/4" in text and "cat a.txt" in text

    # compare: the original and its import are the same steps
    compared = json.loads(cli("compare", str(run.pk), str(imported["id"]), "--json"))
    assert compared["similarity"] == 1.0
    assert {row["match"] for row in compared["steps"]} == {"same"}
    assert "step similarity 100%" in cli("compare", str(run.pk), str(imported["id"]))


def test_cli_import_errors_are_clear(project, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "autopilot.trajectory", "version": 7}')
    with pytest.raises(CommandError, match="Unsupported trajectory version 7"):
        cli("import_run", str(bad), str(project.pk))
    with pytest.raises(CommandError, match="No file"):
        cli("import_run", str(tmp_path / "missing.json"), str(project.pk))
