"""Spec search through its doors: the API (permissions, bad input, schema), the CLI and the plan page."""

from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.test import APIClient

from blueprints.ingestion import ingest_blueprint
from blueprints.models import PlanNode
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db

SPEC = """# Phase 1

## Login

Password login with <b>bold</b> claims & "quotes". <script>alert("body")</script>

## Storage

SQLite first.
"""
ROOT = Path(__file__).resolve().parents[2]


def _api(user=None):
    client = APIClient()
    if user is not None:
        client.force_login(user)
    return client


def _page(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def indexed(project):
    ingest_blueprint(project=project, text=SPEC)
    return project


# --- API ------------------------------------------------------------------------------------------


def test_viewer_searches_through_the_api(indexed, viewer):
    response = _api(viewer).get(f"/api/projects/{indexed.pk}/search/", {"q": "password login", "limit": 5})
    assert response.status_code == 200, response.content
    body = response.json()
    login = PlanNode.objects.get(project=indexed, anchor="phase-1/login")
    assert body["query"] == "password login" and body["count"] == 1
    [hit] = body["results"]
    assert hit["node_id"] == login.pk and hit["anchor"] == login.anchor
    assert hit["title"] == "Login"
    assert '<script>alert("body")</script>' in hit["snippet"]  # JSON: the text as written
    assert "Password login" in hit["snippet"] and hit["score"] > 0


@pytest.mark.parametrize("role", ["operator", "owner"])
def test_higher_roles_search_too(indexed, role):
    user = MembershipFactory(project=indexed, role=role).user
    assert _api(user).get(f"/api/projects/{indexed.pk}/search/", {"q": "sqlite"}).json()["count"] == 1


def test_strangers_and_anonymous_cannot_search(indexed, user):
    assert _api(user).get(f"/api/projects/{indexed.pk}/search/", {"q": "sqlite"}).status_code == 404
    assert _api().get(f"/api/projects/{indexed.pk}/search/", {"q": "sqlite"}).status_code in (401, 403)
    assert _api(user).get("/api/projects/999999/search/", {"q": "sqlite"}).status_code == 404


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "Give a search query (q)"),
        ({"q": "  "}, "Give a search query (q)"),
        ({"q": "x" * 10_240}, "q is at most 1,000 characters (got 10,240)."),
        ({"q": "sqlite", "limit": "0"}, "limit must be 1–50, got 0."),
        ({"q": "sqlite", "limit": "many"}, "limit must be an integer 1–50, got 'many'."),
        ({"q": "sqlite", "limit": "99999999999999999999999"}, "limit must be 1–50"),
    ],
)
def test_bad_search_input_is_a_clear_400(indexed, viewer, params, message):
    response = _api(viewer).get(f"/api/projects/{indexed.pk}/search/", params)
    assert response.status_code == 400, response.content
    assert message in response.json()["detail"]


@pytest.mark.parametrize("q", ['"', "NEAR(", "a OR", "*", "(((", "x:y", "'", "\\", "🙂", "NOT"])
def test_query_syntax_never_errors_through_the_api(indexed, viewer, q):
    response = _api(viewer).get(f"/api/projects/{indexed.pk}/search/", {"q": q})
    assert response.status_code == 200, response.content
    assert response.json()["count"] == 0


def test_the_endpoints_are_in_the_openapi_schema(viewer):
    schema = yaml.safe_load(_api(viewer).get("/api/schema/").content)
    search = schema["paths"]["/api/projects/{project_id}/search/"]["get"]
    assert {p["name"] for p in search["parameters"]} >= {"q", "limit"}
    assert {"200", "400", "404"} <= set(search["responses"])
    assert "post" in schema["paths"]["/api/projects/{project_id}/summaries/"]


# --- CLI ------------------------------------------------------------------------------------------


def run(*args: str) -> str:
    out = StringIO()
    call_command("plan", *args, stdout=out)
    return out.getvalue()


def test_cli_search_prints_sections_and_json(indexed):
    text = run("search", indexed.slug, "sqlite")
    assert "Storage  <#" in text and "phase-1/storage>" in text and "SQLite first." in text
    data = json.loads(run("search", indexed.slug, "password", "--limit", "1", "--json"))
    assert data["project"] == indexed.pk and data["query"] == "password"
    assert [hit["anchor"] for hit in data["results"]] == [
        PlanNode.objects.get(project=indexed, anchor="phase-1/login").anchor
    ]
    assert "No section of" in run("search", indexed.slug, "nothing-like-this")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("",), "Give a search query"),
        (("x" * 2000,), "q is at most 1,000 characters"),
        (("sqlite", "--limit", "0"), "limit must be 1–50, got 0"),
    ],
)
def test_cli_search_refuses_bad_input(indexed, args, message):
    with pytest.raises(CommandError, match=message):
        run("search", indexed.slug, *args)


def test_cli_search_checks_the_users_role(indexed, user, viewer):
    with pytest.raises(CommandError, match="No project"):
        run("search", indexed.slug, "sqlite", "--user", user.username)
    assert "Storage" in run("search", indexed.slug, "sqlite", "--user", viewer.username)


@pytest.mark.django_db(transaction=True)
def test_the_autopilot_command_searches_in_a_child_process(project, subprocess_env):
    ingest_blueprint(project=project, text=SPEC)
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "plan", "search", project.slug, "sqlite", "--json"],
        capture_output=True,
        text=True,
        env=subprocess_env,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["results"][0]["title"] == "Storage"
    bad = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "plan", "search", project.slug, "x" * 5000],
        capture_output=True,
        text=True,
        env=subprocess_env,
        cwd=ROOT,
        timeout=120,
    )
    assert bad.returncode != 0 and "q is at most 1,000 characters" in bad.stderr
    assert "Traceback" not in bad.stderr


# --- The plan page ------------------------------------------------------------------------------------


def test_plan_page_has_a_search_box_and_escaped_results(indexed, viewer):
    page = _page(viewer).get(f"/projects/{indexed.pk}/plan/", {"q": "password"})
    html = page.content.decode()
    assert page.status_code == 200
    assert 'data-testid="plan-search"' in html and 'hx-get="/projects/' in html
    login = PlanNode.objects.get(project=indexed, anchor="phase-1/login")
    assert f"#node-{login.pk}" in html
    assert '<script>alert("body")' not in html
    assert "&lt;script&gt;alert(&quot;body&quot;)&lt;/script&gt;" in html
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "<mark>Password</mark>" in html


def test_search_partial_lists_hits_and_refusals(indexed, viewer, user):
    client = _page(viewer)
    partial = client.get(f"/projects/{indexed.pk}/plan/search/", {"q": "sqlite"}, HTTP_HX_REQUEST="true")
    html = partial.content.decode()
    assert partial.status_code == 200 and 'id="plan-search-results"' in html and "Storage" in html
    assert "<html" not in html
    empty = client.get(f"/projects/{indexed.pk}/plan/search/", {"q": "zebra"}).content.decode()
    assert "No section contains every word of “zebra”" in empty
    long = client.get(f"/projects/{indexed.pk}/plan/search/", {"q": "x" * 5000})
    assert long.status_code == 200 and "q is at most 1,000 characters" in long.content.decode()
    stranger = _page(user).get(f"/projects/{indexed.pk}/plan/search/", {"q": "sqlite"})
    assert stranger.status_code == 404
