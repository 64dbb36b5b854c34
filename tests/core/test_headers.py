"""Security headers on every kind of response, over real HTTP (daphne): a page, an API response, the
admin login. Plus AUTOPILOT_HTTPS (Secure cookies, HSTS) and a guard on our templates: nothing the
Content-Security-Policy would block (inline handlers, style attributes, un-nonced <script>/<style>)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.liveserver import LiveServer, login

PASSWORD = "pw-for-tests-123"  # tests.factories.UserFactory's password
TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def fetch(url: str, cookie: str | None = None) -> tuple[int, dict[str, str], list[str]]:
    """(status, headers, Set-Cookie values) of a GET that does not follow redirects."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    try:
        response = opener.open(request, timeout=30)
    except urllib.error.HTTPError as exc:  # 3xx/4xx still carry the headers under test
        response = exc
    with response:
        return response.status, dict(response.headers.items()), response.headers.get_all("Set-Cookie") or []


def parse_csp(header: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


def assert_security_headers(url: str, headers: dict[str, str]) -> None:
    host = url.split("/")[2].split()[0]
    assert "Content-Security-Policy" in headers, f"{url}: no CSP"
    csp = parse_csp(headers["Content-Security-Policy"])
    assert csp["default-src"] == ["'self'"], url
    assert csp["object-src"] == ["'none'"], url
    assert csp["frame-ancestors"] == ["'none'"], url
    assert csp["base-uri"] == ["'self'"], url
    assert csp["form-action"] == ["'self'"], url
    assert set(csp["connect-src"]) == {"'self'", f"ws://{host}", f"wss://{host}"}, url
    for directive in ("script-src", "style-src"):
        assert "'self'" in csp[directive], url
        unsafe = {"'unsafe-inline'", "'unsafe-eval'", "*", "data:"} & set(csp[directive])
        assert not unsafe, (url, directive, unsafe)
    assert headers.get("X-Frame-Options") == "DENY", url
    assert headers.get("X-Content-Type-Options") == "nosniff", url
    assert headers.get("Referrer-Policy") == "same-origin", url
    assert headers.get("Cross-Origin-Opener-Policy") == "same-origin", url


@pytest.mark.django_db(transaction=True)
def test_security_headers_on_a_page_an_api_response_and_the_admin_login(subprocess_env, project, viewer):
    with LiveServer(env=subprocess_env) as server:
        cookie = login(server.url, viewer.username, PASSWORD)
        responses = {
            "login page": fetch(server.url + "/accounts/login/"),
            "dashboard": fetch(server.url + "/", cookie),
            "project page": fetch(server.url + f"/projects/{project.pk}/", cookie),
            "api": fetch(server.url + "/api/projects/", cookie),
            "api error": fetch(server.url + "/api/projects/"),
            "admin login": fetch(server.url + "/admin/login/"),
        }
    for name, (status, headers, cookies) in responses.items():
        assert status in ((401, 403) if name == "api error" else (200,)), (name, status)
        assert_security_headers(server.url + " " + name, headers)
        # Plain HTTP by default: no HSTS, no Secure cookies (they would never be sent back)
        assert "Strict-Transport-Security" not in headers, name
        assert not any("secure" in c.lower().split("; ") for c in cookies), (name, cookies)
    assert responses["api"][1]["Content-Type"].startswith("application/json")


HTTPS_PROBE = """
import json
import django
django.setup()
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
response = Client().get("/accounts/login/", secure=True)
print(json.dumps({"status": response.status_code, "hsts": response.headers.get("Strict-Transport-Security"),
                  "cookies": {name: bool(c["secure"]) for name, c in response.cookies.items()}}))
"""


def https_probe(env: dict) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", HTTPS_PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("extra", "hsts", "secure"),
    [
        pytest.param({}, None, False, id="default"),
        pytest.param({"AUTOPILOT_HTTPS": "1"}, "max-age=31536000", True, id="https"),
        pytest.param(
            {"AUTOPILOT_HTTPS": "1", "AUTOPILOT_HSTS_INCLUDE_SUBDOMAINS": "1"},
            "max-age=31536000; includeSubDomains",
            True,
            id="https-subdomains",
        ),
        pytest.param(
            {"AUTOPILOT_HTTPS": "1", "AUTOPILOT_HSTS_SECONDS": "600"}, "max-age=600", True, id="https-short"
        ),
    ],
)
def test_autopilot_https_turns_on_secure_cookies_and_hsts(subprocess_env, extra, hsts, secure):
    # Given the settings read from the environment of a fresh process, When an HTTPS request is served
    result = https_probe({**subprocess_env, **extra})

    # Then HSTS and the Secure flag on the CSRF cookie follow AUTOPILOT_HTTPS
    assert result["status"] == 200
    assert result["hsts"] == hsts
    assert result["cookies"] == {"csrftoken": secure}


# --- Templates: nothing the CSP blocks -------------------------------------------------------------

INLINE_HANDLER = re.compile(r"<[^>]*\son[a-z]+\s*=", re.IGNORECASE)
STYLE_ATTRIBUTE = re.compile(r"<[^>]*\sstyle\s*=", re.IGNORECASE)
HX_ON = re.compile(r"\s(?:hx|data-hx)-on", re.IGNORECASE)
INLINE_BLOCK = re.compile(r"<(script|style)\b([^>]*)>", re.IGNORECASE)
JAVASCRIPT_URL = re.compile("javascript:", re.IGNORECASE)
COMMENTS = re.compile(r"\{#.*?#\}|\{% comment %\}.*?\{% endcomment %\}", re.DOTALL)


def template_problems(text: str) -> list[str]:
    text = COMMENTS.sub("", text)
    problems = []
    checks = (
        (INLINE_HANDLER, "inline event handler"),
        (STYLE_ATTRIBUTE, "style attribute"),
        (HX_ON, "hx-on (needs eval)"),
        (JAVASCRIPT_URL, "javascript: URL"),
    )
    for pattern, what in checks:
        problems += [f"{what}: {m.group(0)[:60]!r}" for m in pattern.finditer(text)]
    for m in INLINE_BLOCK.finditer(text):
        tag, attrs = m.group(1).lower(), m.group(2)
        if tag == "script" and "src=" in attrs:
            continue
        if "nonce=" not in attrs:
            problems.append(f"<{tag}> without a nonce")
    return problems


def test_the_template_guard_finds_what_the_csp_would_block():
    bad = (
        '<form onsubmit="return confirm()"><b style="color:red"><div hx-on::after-swap="x()">'
        '<script>alert(1)</script><style>b{}</style><a href="javascript:x()">'
    )
    assert len(template_problems(bad)) == 6
    good = (
        '<script src="/static/a.js" defer></script><style nonce="{{ request.csp_nonce }}">b{}</style>'
        "{# a <script> onclick= in a comment #}"
    )
    assert template_problems(good) == []


def test_templates_have_no_inline_code_the_csp_would_block():
    found = {
        str(path.relative_to(TEMPLATES)): template_problems(path.read_text())
        for path in sorted(TEMPLATES.rglob("*.html"))
    }
    assert {name: problems for name, problems in found.items() if problems} == {}
