"""The run page's terminal panel and the terminal recording, redacted: `GET /runs/<id>/recording.cast`.

The panel shows the browser terminal while the run's terminal is live (an interactive session, or an
autonomous run taken over by a human), otherwise the replay of its recording, if it has one.

Thin: the websocket is runs.consumers.TerminalConsumer, the browser side autopilot/static/autopilot/
terminal.js; the session and its recording are runs.interactive's.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, HttpResponseNotFound
from django.urls import reverse

from autopilot.errors import NotFound
from autopilot.models import Role
from autopilot.permissions import has_role
from autopilot.web import require_role_or_404
from runs import interactive, selectors
from runs.models import ExecutionRun, RunKind
from runs.redaction import Redactor
from runs.terminal import BadRecording, redact_cast

MAX_RECORDING_BYTES = 20 * 1024 * 1024  # served at most; the rest is cut at a line with a marker event
CAST_TYPE = "application/x-asciicast; charset=utf-8"


def terminal_context(request, run: ExecutionRun) -> dict | None:
    """What the run page's terminal panel shows, or None for a run that never had a terminal (an
    autonomous run never taken over)."""
    live = not run.is_terminal and interactive.is_live(run)  # a session, or an autonomous run taken over
    recorded = interactive.recording_path(run).is_file()
    if run.kind != RunKind.INTERACTIVE and not live and not recorded:
        return None
    return {
        "live": live,
        "can_attach": has_role(request.user, run.project, Role.OPERATOR),
        "socket": f"/ws/runs/{run.pk}/terminal/",
        "recording": recording_url(run) if recorded and not live else None,
    }


def recording_url(run: ExecutionRun) -> str:
    return reverse("run-recording", args=[run.pk])


class NoRecording(Exception):
    """A member asked for a recording that cannot be served; the message says why."""


def read_recording(run: ExecutionRun) -> str:
    """The run's recording, at most MAX_RECORDING_BYTES of it."""
    try:
        with interactive.recording_path(run).open("rb") as handle:
            raw = handle.read(MAX_RECORDING_BYTES + 1)
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise NoRecording(f"Run #{run.pk} has no terminal recording.") from exc
    if len(raw) <= MAX_RECORDING_BYTES:
        return raw.decode("utf-8", errors="replace")
    kept = raw[: raw.rfind(b"\n", 0, MAX_RECORDING_BYTES) + 1].decode("utf-8", errors="replace")
    return kept + '[0, "m", "the recording is longer than the part served"]\n'


@login_required
def run_recording(request, run_id: int):
    """The run's asciicast v2 recording, redacted (the project's .env values too). Viewer role; a
    non-member gets the plain 404 of a run that does not exist, a member a 404 saying why."""
    try:
        run = selectors.run_get(run_id)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    require_role_or_404(request.user, run.project, Role.VIEWER)
    try:
        text = read_recording(run)
        try:
            body = redact_cast(text, Redactor.for_project(run.project, run.worktree_path or None))
        except BadRecording as exc:
            raise NoRecording(f"Run #{run.pk}'s recording cannot be read: {exc}.") from exc
    except NoRecording as exc:
        return HttpResponseNotFound(str(exc), content_type="text/plain; charset=utf-8")
    response = HttpResponse(body, content_type=CAST_TYPE)
    response["Content-Disposition"] = f'inline; filename="run-{run.pk}.cast"'
    response["Cache-Control"] = "private, no-store"
    return response
