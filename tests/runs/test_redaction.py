"""Redaction: every secret shape is masked through every door, ordinary text survives, and every
pattern stays linear on adversarial input (security findings 5 and 6)."""

from __future__ import annotations

import base64
import json

import pytest
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

import autopilot.redaction as engine
from autopilot.events import record_event
from autopilot.models import Event
from blueprints import services as task_services
from blueprints.models import Task
from runs import trajectory
from runs.context import create_step
from runs.models import ExecutionRun, ExecutionStep, RunMessage
from runs.redaction import Redactor, redact, redact_data
from runs.worker import execute_run
from tests.factories import MembershipFactory, ProjectFactory
from tests.gitrepo import make_repo

# (id, text as it appears in the wild, the secret that must vanish from it)
PEM_BODY = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0"
CORPUS = [
    (
        "github-ghp",
        "export GH=ghp_R4nd0mT0k3nV4lu3abcdefghijklmnop12",
        "ghp_R4nd0mT0k3nV4lu3abcdefghijklmnop12",
    ),
    (
        "github-gho",
        "oauth: gho_16C7e42F292c6912E7710c838347Ae178B4a",
        "gho_16C7e42F292c6912E7710c838347Ae178B4a",
    ),
    (
        "github-pat",
        "github_pat_11ABCDEFG0abcdefghijkl_mnopqrstuvwxyz0123456789ABCDEFGHIJ",
        "github_pat_11ABCDEFG0abcdefghijkl_mnopqrstuvwxyz0123456789ABCDEFGHIJ",
    ),
    (
        "anthropic",
        "key sk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe-AbCd_EfGh",
        "sk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe",
    ),
    (
        "openai-proj",
        "OPENAI=sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z_T3BlbkFJ",
        "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
    ),
    (
        "openai-legacy",
        "use sk-4fQ9zR2mK8pL1vX7cN3bT6yH0wJ5gD2sA9eU4iO8rM1kZ3xV today",
        "sk-4fQ9zR2mK8pL1vX7cN3bT6yH0wJ5gD2sA9eU4iO8rM1kZ3xV",
    ),
    ("aws-id", "aws id AKIAIOSFODNN7EXAMPLE in the log", "AKIAIOSFODNN7EXAMPLE"),
    (
        "aws-secret-bare",
        "creds: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY end",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
    (
        "aws-secret-bare-2",
        "9Xk2Lq7Rm4Tz8Wv1Yb6Nc3Pd5Hf0Gj/Ks+Ua2Qe7",
        "9Xk2Lq7Rm4Tz8Wv1Yb6Nc3Pd5Hf0Gj/Ks+Ua2Qe7",
    ),
    (
        "slack",
        "SLACK xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        "xoxb-123456789012-1234567890123",
    ),
    ("stripe-sk", "stripe sk_live_51HqLyjWDarjtT1zdp7dcXhp9", "sk_live_51HqLyjWDarjtT1zdp7dcXhp9"),
    ("stripe-rk", "restricted rk_live_51HqLyjWDarjtT1zdQ7cXhp9", "rk_live_51HqLyjWDarjtT1zdQ7cXhp9"),
    (
        "jwt",
        "cookie=eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV",
        "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV",
    ),
    ("pem-rsa", f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----", PEM_BODY),
    (
        "pem-ec",
        "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oo\n"
        "-----END EC PRIVATE KEY-----",
        "MHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oo",
    ),
    (
        "pem-openssh-cut",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n",
        "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ",
    ),
    ("url-password", "DATABASE_URL postgres://admin:Hunter2Sup3r@db.example.com:5432/app", "Hunter2Sup3r"),
    ("env-line", "DB_PASSWORD=Tr0ub4dor&3xyz\nDEBUG=1", "Tr0ub4dor&3xyz"),
    ("env-token", "export GITHUB_TOKEN='plainEnvTokenValue42'", "plainEnvTokenValue42"),
    ("json-password", '{"user": "bob", "password": "jsonPassw0rd!"}', "jsonPassw0rd!"),
    ("json-short", '{"password": "x7"}', '"x7"'),
    ("yaml-password", "db:\n  password: yamlPassw0rdValue\n", "yamlPassw0rdValue"),
    ("yaml-api-key", 'service:\n  api_key: "yamlApiKeyValue9"\n', "yamlApiKeyValue9"),
    ("code-secret-key", 'SECRET_KEY = "django-insecure-abc123def456"', "django-insecure-abc123def456"),
    (
        "bearer",
        "curl -H 'Authorization: Bearer abc.def.ghi1234567890xyz' https://api",
        "abc.def.ghi1234567890xyz",
    ),
    ("basic-auth", "Authorization: Basic YWxhZGRpbjpvcGVuc2VzYW1l", "YWxhZGRpbjpvcGVuc2VzYW1l"),
]
SECRETS = [secret for _, _, secret in CORPUS]
ALL_SHAPES = "\n".join(text for _, text, _ in CORPUS)

BASE64_BLOB = base64.b64encode(bytes(range(256)) * 3).decode()
SURVIVORS = [
    ("git-sha", "commit 3f786850e387550fdab836ed7e6dc881de23001b (HEAD -> main)"),
    (
        "git-sha-upper-run",
        "merge 9fceb02d0ae598e95dc970b74767f19372d61af8 into 4b825dc642cb6eb9a060e54bf8d69288fbee4904",
    ),
    ("uuid", "run 123e4567-e89b-12d3-a456-426614174000 finished"),
    ("base64-diff", "+" + "\n+".join(BASE64_BLOB[i : i + 76] for i in range(0, len(BASE64_BLOB), 76))),
    ("identifiers", "getUserAccountSettingsForProjectVersion2 = build_the_configuration_for_project_v2()"),
    ("paths", "src/components/forms/UserProfileFormV2.tsx and /usr/lib/python3/dist-packages/x.py"),
    ("kebab", "task-management-framework-abcdefghijklmnop and risk-assessment-toolkit-xyz"),
    ("stripe-public", "pk_live_51HqLyjWDarjtT1zdp7dcXhp9"),
    ("usage-json", '{"input_tokens": 1234, "max_tokens": 4096, "token_count": 7}'),
    (
        "code",
        "def login(password: str, token: Optional[str] = None):\n    password = settings.DB_PASSWORD\n"
        "    pw = request.POST.get('password')\n    if password == other: pass",
    ),
    ("placeholders", 'password: ${DB_PASSWORD}\napi_key: "<your key here>"\ntoken: null\n"password": ""'),
    ("prose", "The bearer of this note is the quick brown fox; see http://example.com:8080/a@b for more."),
    ("short-sk", "nothing to see here: sk-short"),
]


def leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


# --- The shapes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "secret"), [(t, s) for _, t, s in CORPUS], ids=[i for i, _, _ in CORPUS])
def test_every_secret_shape_is_masked(text, secret):
    masked = redact(text)
    assert secret not in masked
    assert "[REDACTED:" in masked


@pytest.mark.parametrize("text", [t for _, t in SURVIVORS], ids=[i for i, _ in SURVIVORS])
def test_ordinary_text_survives(text):
    assert redact(text) == text


def test_masks_keep_the_context_around_the_secret():
    assert redact("postgres://admin:Hunter2Sup3r@db.example.com/app") == (
        "postgres://admin:[REDACTED:url_password]@db.example.com/app"
    )
    assert redact('{"password": "jsonPassw0rd!"}') == '{"password": "[REDACTED:secret_assignment]"}'
    assert redact("DB_PASSWORD=Tr0ub4dor&3xyz") == "DB_PASSWORD=[REDACTED:secret_assignment]"


def test_redaction_is_idempotent():
    once = redact(ALL_SHAPES)
    assert redact(once) == once
    assert leaks(once) == []


def test_env_literals_longest_first_in_one_pass():
    redactor = Redactor(["correct-horse-battery", "correct-horse", "short"])
    assert redactor("a correct-horse-battery b correct-horse c short") == (
        "a [REDACTED:env_value] b [REDACTED:env_value] c short"
    )


def test_redact_data_walks_any_depth_keys_and_values():
    deep: list = []
    node = deep
    for _ in range(50_000):  # far deeper than Python's recursion limit
        child: list = []
        node.append(child)
        node = child
    node.append("ghp_R4nd0mT0k3nV4lu3abcdefghijklmnop12")
    out = redact_data({"k": deep, "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z": ("x", 3)})
    node = out["k"]
    while node and isinstance(node[0], list):
        node = node[0]
    assert node == ["[REDACTED:github_token]"]
    assert list(out) == ["k", "[REDACTED:openai_key]"] and out["[REDACTED:openai_key]"] == ["x", 3]


# --- Linear on adversarial input ------------------------------------------------------------------

MB = 1_000_000


def _rep(unit: str, size: int = MB) -> str:
    return (unit * (size // len(unit) + 1))[:size]


# Inputs that make a backtracking pattern rescan what it already scanned: a quadratic pattern takes
# minutes on ~1 MB of these (the old url_password took 31 s on 200 KB of letters).
ADVERSARIAL = {
    "private_key-begins": lambda: _rep("-----BEGIN RSA PRIVATE KEY-----"),
    "private_key-header-run": lambda: "-----BEGIN " + _rep("A "),
    "private_key-ends": lambda: "-----BEGIN RSA PRIVATE KEY-----\n" + _rep("-----END A"),
    "anthropic-prefixes": lambda: _rep("sk-ant-"),
    "anthropic-short": lambda: _rep("sk-ant-abc "),
    "openai-prefixes": lambda: _rep("sk-"),
    "openai-proj-short": lambda: _rep("sk-proj-abc "),
    "github-prefixes": lambda: _rep("ghp_"),
    "aws-id-prefixes": lambda: _rep("AKIA"),
    "aws-secret-run": lambda: _rep("A1a/"),
    "aws-secret-tokens": lambda: _rep("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKE "),
    "slack-prefixes": lambda: _rep("xoxb-"),
    "stripe-prefixes": lambda: _rep("sk_live_"),
    "jwt-prefixes": lambda: _rep("eyJ"),
    "jwt-dots": lambda: _rep("eyJabcd.eyJabcd."),
    "bearer-words": lambda: _rep("bearer "),
    "bearer-spaces": lambda: "Bearer" + _rep(" "),
    "authorization-headers": lambda: _rep("Authorization: "),
    "url-letters": lambda: _rep("a"),
    "url-colons": lambda: _rep("://a:"),
    "url-scheme-run": lambda: "://" + _rep("a"),
    "url-userpass": lambda: _rep("x://u:p"),
    "assignment-eq": lambda: _rep("password="),
    "assignment-quote": lambda: _rep('password="'),
    "assignment-keys": lambda: _rep("password"),
    "assignment-spaces": lambda: "password:" + _rep(" "),
    "assignment-tokens": lambda: _rep("tokentoken: "),
}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("make", list(ADVERSARIAL.values()), ids=list(ADVERSARIAL))
def test_each_pattern_is_linear_on_adversarial_input(make):
    text = make()
    assert len(redact(text)) > 0


@pytest.mark.timeout(20)
def test_env_literals_are_linear_on_adversarial_input():
    values = [f"value{i:05d}-{'x' * 20}" for i in range(2000)]
    assert Redactor(values)(_rep("value0")) == _rep("value0")


@pytest.mark.timeout(20)
def test_redact_data_is_linear_on_wide_and_deep_structures():
    wide = {f"k{i}": ["password=abcdefgh", {"n": i}] for i in range(30_000)}
    assert redact_data(wide)["k7"][0] == "password=[REDACTED:secret_assignment]"


# --- Never inside a write transaction -------------------------------------------------------------

MARKER = "ghp_MARKERmarkerMARKERmarker0123456789"


@pytest.mark.django_db(transaction=True)
def test_long_text_is_redacted_before_the_write_transaction_opens(monkeypatch, project, operator):
    # given a spy on the engine that notes whether a text carrying the marker is redacted inside a transaction
    inside: list[bool] = []
    real = engine._redact

    def spy(text, literals):
        if MARKER in text:
            inside.append(connection.in_atomic_block)
        return real(text, literals)

    monkeypatch.setattr(engine, "_redact", spy)
    api = APIClient()
    api.force_authenticate(operator)
    long_text = "x" * 600 + " " + MARKER  # past the 500 characters an event keeps

    # when a run is created, messaged and a task is created through the API
    made = api.post(
        f"/api/projects/{project.pk}/runs/", {"prompt": long_text, "agent": "scripted"}, format="json"
    )
    assert made.status_code == 201, made.data
    assert (
        api.post(f"/api/runs/{made.data['id']}/message/", {"body": long_text}, format="json").status_code
        == 201
    )
    task = api.post("/api/tasks/", {"project": project.pk, "title": "t", "body": long_text}, format="json")
    assert task.status_code == 201, task.data

    # then each text was redacted, and never while a transaction was open
    assert inside and not any(inside), inside
    assert MARKER not in ExecutionRun.objects.get(pk=made.data["id"]).prompt


# --- Through every door ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_no_secret_shape_survives_any_door(tmp_path):
    # given a repository holding a file full of secrets, and a member of its project
    repo = make_repo(tmp_path / "repo", {"README.md": "# r\n", "leaky.txt": ALL_SHAPES + "\nline to edit\n"})
    project = ProjectFactory(repo_path=str(repo), autonomy_mode="full_auto", command_allowlist=["cat"])
    operator = MembershipFactory(project=project, role="operator").user
    api = APIClient()
    api.force_authenticate(operator)
    script = [
        {"run": "cat leaky.txt"},  # step output
        {"edit": "leaky.txt", "old": "line to edit", "new": "edited line"},  # a diff with the secrets around
        {"write": "copy.txt", "content": ALL_SHAPES},  # step input (the script)
        {"finish": "done: " + ALL_SHAPES},  # result summary
    ]

    # when every shape goes through every door: API create (prompt + settings), a scripted run,
    # a message, a step recorded by a backend, an event, a task
    made = api.post(
        f"/api/projects/{project.pk}/runs/",
        {"prompt": "do it " + ALL_SHAPES, "agent": "scripted", "settings": {"script": script}},
        format="json",
    )
    assert made.status_code == 201, made.data
    run = ExecutionRun.objects.get(pk=made.data["id"])
    assert execute_run(run.pk) == "succeeded"
    assert (
        api.post(f"/api/runs/{run.pk}/message/", {"body": "note " + ALL_SHAPES}, format="json").status_code
        == 201
    )
    create_step(
        run=run,
        kind="read_file",
        redactor=Redactor.for_project(project),
        artifacts_dir=None,
        tool_name="read",
        input={"path": "x", "seen": ALL_SHAPES, ALL_SHAPES[:60]: 1},
        status="completed",
        output=ALL_SHAPES,
        diff=ALL_SHAPES,
        risk_reason=ALL_SHAPES,
    )
    record_event(kind="test.note", project=project, data={"note": ALL_SHAPES, "nested": [{"x": ALL_SHAPES}]})
    task = api.post(
        "/api/tasks/",
        {"project": project.pk, "title": "fix " + SECRETS[0], "body": ALL_SHAPES},
        format="json",
    )
    assert task.status_code == 201, task.data

    # then no secret is anywhere: the database rows, the API JSON, the exports, the run page
    rows = [
        *ExecutionRun.objects.filter(pk=run.pk).values_list(
            "prompt", "settings", "result_summary", "status_reason", "error"
        ),
        *ExecutionStep.objects.filter(run=run).values_list(
            "input", "output", "diff", "risk_reason", "decision_note"
        ),
        *RunMessage.objects.filter(run=run).values_list("body"),
        *Event.objects.filter(project=project).values_list("data"),
        *Task.objects.filter(project=project).values_list("title", "body"),
    ]
    doors = {
        "db": json.dumps(rows, default=str),
        "api-run": api.get(f"/api/runs/{run.pk}/").content.decode(),
        "api-steps": api.get(f"/api/steps/?run={run.pk}").content.decode(),
        "api-task": api.get(f"/api/tasks/{task.data['id']}/").content.decode(),
        "export-json": api.get(f"/api/runs/{run.pk}/export/?format=json").content.decode(),
        "export-rlog": api.get(f"/api/runs/{run.pk}/export/?format=rlog").content.decode(),
    }
    web = Client()
    web.force_login(operator)
    page = web.get(f"/runs/{run.pk}/")
    assert page.status_code == 200
    doors["run-page"] = page.content.decode()
    doors["rlog-render"] = trajectory.render_rlog(trajectory.export_run(run))
    found = {door: leaks(text) for door, text in doors.items() if leaks(text)}
    assert found == {}, found
    # and the doors really carried the text (masked): the test would notice a door that drops it
    for door in ("db", "api-run", "export-json", "run-page"):
        assert "[REDACTED:" in doors[door], door
    assert ExecutionStep.objects.filter(
        run=run, kind="run_terminal", output__contains="[REDACTED:jwt]"
    ).exists()


@pytest.mark.django_db(transaction=True)
def test_import_redacts_a_trajectory_from_elsewhere(project):
    data = {
        "schema": "autopilot.trajectory",
        "version": 1,
        "run": {
            "id": 1,
            "backend": "scripted",
            "prompt": ALL_SHAPES,
            "status": "succeeded",
            "result_summary": ALL_SHAPES,
        },
        "usage": {},
        "timings": {},
        "steps": [
            {
                "seq": 1,
                "kind": "read_file",
                "status": "completed",
                "input": {"k": ALL_SHAPES},
                "output": ALL_SHAPES,
                "diff": ALL_SHAPES,
            }
        ],
        "messages": [{"body": ALL_SHAPES}],
    }
    run = trajectory.import_run(project=project, raw=data)
    stored = json.dumps(
        [
            *ExecutionRun.objects.filter(pk=run.pk).values_list("prompt", "result_summary", "settings"),
            *ExecutionStep.objects.filter(run=run).values_list("input", "output", "diff"),
            *RunMessage.objects.filter(run=run).values_list("body"),
        ]
    )
    assert leaks(stored) == []


@pytest.mark.django_db(transaction=True)
def test_task_update_stores_a_redacted_body(project):
    task = task_services.task_create(project=project, title="t")
    task_services.task_update(task=task, body="pw " + ALL_SHAPES, title="t " + SECRETS[1])
    task.refresh_from_db()
    assert leaks(task.title + task.body) == []
