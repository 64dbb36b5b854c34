"""The API docs page renders Swagger UI from our own static files: no request leaves the server."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_api_docs_render_offline(logged_in_page, asgi_server):
    page = logged_in_page
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))

    # When the API docs page is opened from the top bar
    page.goto("/")
    page.get_by_role("link", name="API docs").click()

    # Then Swagger UI shows the schema's title and an operation list
    expect(page.get_by_role("heading", name="Autopilot API")).to_be_visible()
    expect(page.locator(".opblock").first).to_be_visible()
    # and every asset came from the server itself (works on a machine without internet)
    outside = [
        url for url in requested if not url.startswith(asgi_server.url) and not url.startswith("data:")
    ]
    assert outside == []
