"""`autopilot session list|show|view|start|prompt|logs|cancel|attach`: runs ("sessions") from the terminal."""

from __future__ import annotations

import json
import sys

from django.utils import timezone

from autopilot.cli_support import resolve_project, to_jsonable
from autopilot.errors import ApplicationError, NotFound
from autopilot.models import Role
from autopilot.permissions import require_role
from blueprints.models import Task
from blueprints.selectors import task_get
from runs import selectors, services
from runs.bundle import sent_prompt
from runs.management.commands._runcli import (
    OneLineParser,
    RunCliCommand,
    check_output_dir,
    get_run,
    parse_budget,
    parse_priority,
    resolve_model,
    run_text,
    step_line,
    stream_steps,
)
from runs.management.commands.run import Command as RunCommand
from runs.models import ExecutionRun

INTERACTIVE = "interactive sessions are not available yet (autonomous sessions are: `--type autonomous`)."
STATUS_GROUPS = {"active": ExecutionRun.ACTIVE, "finished": ExecutionRun.TERMINAL}


def _statuses(text: str | None) -> list[str]:
    wanted: list[str] = []
    for name in filter(None, (part.strip().lower() for part in (text or "").split(","))):
        if name in STATUS_GROUPS:
            wanted += list(STATUS_GROUPS[name])
        elif name in ExecutionRun.Status.values:
            wanted.append(name)
        else:
            choices = ", ".join([*ExecutionRun.Status.values, *STATUS_GROUPS])
            raise ApplicationError(f"--status: unknown status '{name}'; choose from {choices}.")
    return wanted


def _duration(run: ExecutionRun) -> float | None:
    if not run.started_at:
        return None
    return round(((run.ended_at or timezone.now()) - run.started_at).total_seconds(), 1)


def _table(runs: list[ExecutionRun]) -> str:
    if not runs:
        return "no sessions"
    rows = [("ID", "PROJECT", "TYPE", "STATUS", "STARTED", "DURATION", "COST", "PROMPT")]
    for r in runs:
        started = r.started_at.strftime("%Y-%m-%d %H:%M") if r.started_at else "-"
        duration = _duration(r)
        rows.append(
            (
                str(r.pk),
                r.project.name[:24],
                "autonomous",
                r.status,
                started,
                "-" if duration is None else f"{duration:.1f}s",
                f"${r.cost_usd:.4f}",
                (r.prompt.splitlines() or [""])[0][:50],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in rows
    )


def _prompt_lines(run: ExecutionRun, *, full: bool) -> list[str]:
    """The prompt as sent: one line per part (state, size), or with `full` every part's text."""
    parts = run.prompt_parts or []
    if not parts:
        sent = sent_prompt(run)
        if not sent:
            return ["prompt as sent: - (not started)"]
        return ["prompt as sent:", sent] if full else [f"prompt as sent: {len(sent):,} characters (--prompt)"]
    kept = [p for p in parts if p.get("state") != "dropped"]
    tokens = sum(p.get("tokens", 0) for p in kept)
    lines = [f"prompt as sent: {len(kept)} of {len(parts)} parts, ~{tokens:,} tokens"]
    for part in parts:
        size = f"~{part.get('tokens', 0):,} tokens" if part.get("state") != "dropped" else "-"
        lines.append(f"  {part.get('label', part.get('name', '?')):<40} {part.get('state', ''):<11} {size}")
        if full and part.get("text"):
            lines += ["", part["text"], ""]
    return lines


class Command(RunCliCommand):
    help = "Sessions (runs): list, show/view, start a task, prompt a running agent, follow logs, cancel."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(
            dest="action", required=True, metavar="ACTION", parser_class=OneLineParser
        )
        listing = self.add_action(
            sub, "list", "Sessions, newest first (all projects you can see by default)."
        )
        listing.add_argument("project_arg", nargs="?", metavar="PROJECT", help="Same as --project.")
        listing.add_argument("--project", help="Only this project's sessions (id, slug or name).")
        listing.add_argument("--status", help="Comma-separated statuses (or: active, finished).")
        listing.add_argument("--type", choices=["autonomous", "interactive"], help="Session type.")
        listing.add_argument("--format", choices=["table", "json"], default="table")
        listing.add_argument("--limit", type=int, default=50)
        for name in ("show", "view"):
            show = self.add_action(sub, name, "One session with its prompt's parts and its steps.")
            show.add_argument("run", metavar="ID")
            show.add_argument(
                "--prompt", action="store_true", help="Print the whole prompt as sent, part by part."
            )
        start = self.add_action(
            sub,
            "start",
            "Start a session on a task (runs it here; --queue: hand it to the workers and return).",
        )
        start.add_argument("task", metavar="TASK", help="Task (issue) id.")
        start.add_argument(
            "--project", help="The task's project (id, slug or name); default: the task's own."
        )
        start.add_argument("--type", choices=["autonomous", "interactive"], default="autonomous")
        start.add_argument(
            "--priority", default="2", help="0–5 or lowest, low, medium, high, highest, urgent."
        )
        start.add_argument(
            "--queue", action="store_true", help="Queue it for the workers and return at once."
        )
        start.add_argument("--agent", help="Agent backend (default: the project's).")
        start.add_argument("-m", "--model", help="Model: sonnet, opus, haiku, or a full name.")
        start.add_argument("-b", "--max-budget", help="Max USD for this session.")
        start.add_argument("-o", "--output-dir", help="Write the trajectory files under this directory.")
        prompt = self.add_action(
            sub, "prompt", "Send a message to the running agent (delivered between turns)."
        )
        prompt.add_argument("run", metavar="ID")
        prompt.add_argument("text", metavar="TEXT")
        logs = self.add_action(sub, "logs", "A session's steps; --follow streams them until it ends.")
        logs.add_argument("run", metavar="ID")
        logs.add_argument("-f", "--follow", action="store_true")
        cancel = self.add_action(
            sub, "cancel", "Cancel a session: queued ones at once, running ones stop gracefully."
        )
        cancel.add_argument("run", metavar="ID")
        attach = self.add_action(sub, "attach", "Attach to an interactive session.")
        attach.add_argument("run", metavar="ID")

    def handle(self, *args, **options):
        self.as_json = options.get("json", False) or options.get("format") == "json"
        getattr(self, "do_" + options["action"])(options)

    # -- reading -----------------------------------------------------------------------------------

    def do_list(self, options):
        actor = self.actor(options)
        if options["project"] and options["project_arg"]:
            raise ApplicationError("Give the project once: `session list --project NAME`.")
        if options["limit"] < 1:
            raise ApplicationError("--limit must be 1 or more.")
        statuses = _statuses(options["status"])
        named = options["project"] or options["project_arg"]
        if named:
            project = resolve_project(named, user=actor)
            if actor is not None:
                require_role(actor, project, Role.VIEWER)
            qs = selectors.run_list(project=project)
        elif actor is not None:
            qs = selectors.runs_visible_to(actor).order_by("-created_at", "-id")
        else:  # no account at all: the local shell sees every project
            qs = ExecutionRun.objects.select_related("project", "task").order_by("-created_at", "-id")
        if statuses:
            qs = qs.filter(status__in=statuses)
        if options["type"] == "interactive":
            qs = qs.none()  # every session is autonomous until interactive sessions exist
        runs = list(qs.prefetch_related("steps")[: options["limit"]])
        data = [
            {
                **selectors.run_to_dict(r),
                "project_name": r.project.name,
                "type": "autonomous",
                "duration_seconds": _duration(r),
            }
            for r in runs
        ]
        self.emit({"runs": data}, _table(runs))

    def do_show(self, options):
        run = get_run(self, options["run"], options)
        run = selectors.run_get(run.pk, with_steps=True)
        data = {
            **selectors.run_to_dict(run),
            "project_name": run.project.name,
            "type": "autonomous",
            "sent_prompt": sent_prompt(run),
            "prompt_parts": run.prompt_parts or [],
        }
        text = "\n".join([run_text(run, data), *_prompt_lines(run, full=options["prompt"])])
        self.emit(data, text + "\n" + "\n".join(step_line(s) for s in run.steps.all()))

    do_view = do_show

    def do_logs(self, options):
        run = get_run(self, options["run"], options)
        tty = sys.stderr.isatty() and not self.as_json

        def ended() -> bool:
            current = ExecutionRun.objects.filter(pk=run.pk).values("status", "cost_usd", "turns").first()
            if tty:
                sys.stderr.write(
                    f"\r… {current['status']}  ${current['cost_usd']:.4f}  {current['turns']} turns "
                )
                sys.stderr.flush()
            return not options["follow"] or current["status"] in ExecutionRun.TERMINAL

        stream_steps(self, run.pk, until=ended, poll=0.3, as_json=self.as_json)
        if tty:
            sys.stderr.write("\r\033[K")
        final = selectors.run_get(run.pk)
        if options["follow"]:
            if self.as_json:
                self.stdout.write(
                    json.dumps(
                        to_jsonable(
                            {"run": run.pk, "status": final.status, "status_reason": final.status_reason}
                        )
                    )
                )
            else:
                self.stdout.write(
                    f"run #{final.pk} {final.status}"
                    + (f": {final.status_reason}" if final.status_reason else "")
                )

    # -- acting ------------------------------------------------------------------------------------

    def do_start(self, options):
        if options["type"] == "interactive":
            raise ApplicationError(INTERACTIVE[0].upper() + INTERACTIVE[1:])
        actor = self.actor(options)
        priority = parse_priority(options["priority"])
        budget = parse_budget(options["max_budget"])
        check_output_dir(options["output_dir"])
        if options["project"]:
            task = task_get(resolve_project(options["project"], user=actor), options["task"])
        else:
            text = str(options["task"]).strip().lstrip("#")
            task = (
                Task.objects.select_related("project").filter(pk=int(text)).first()
                if text.isdigit()
                else None
            )
            if task is None:
                raise NotFound(f"No task '{options['task']}' (`autopilot task list PROJECT` shows them).")
        if actor is not None:
            require_role(actor, task.project, Role.OPERATOR)
        run = services.run_create(
            project=task.project,
            prompt="",
            task=task,
            agent_backend=options["agent"],
            model=resolve_model(options["model"]),
            budget_usd=budget,
            priority=priority,
            actor=actor,
            enqueue=options["queue"],
        )
        if options["queue"]:
            self.emit(
                selectors.run_to_dict(run),
                f"queued session #{run.pk} for task #{task.pk} (priority {priority}); "
                f"follow it with `autopilot session logs {run.pk} --follow`",
            )
            return
        runner = RunCommand(stdout=self.stdout, stderr=self.stderr)
        runner.as_json = self.as_json
        if not self.as_json:
            self.stdout.write(f"session #{run.pk} started on task #{task.pk}: {task.title}")
        runner.foreground(run, actor, output_dir=options["output_dir"])

    def do_prompt(self, options):
        run = get_run(self, options["run"], options, Role.OPERATOR)
        message = services.run_message(run=run, body=options["text"], actor=self.actor(options))
        note = (
            "delivered to the agent between turns"
            if message.delivered_at is None
            else "noted (the run has ended)"
        )
        self.emit(
            {"id": message.pk, "run": run.pk, "body": message.body, "delivered_at": message.delivered_at},
            f"message {message.pk} sent to session #{run.pk}: {note}",
        )

    def do_cancel(self, options):
        run = get_run(self, options["run"], options, Role.OPERATOR)
        run = services.run_stop(run=run, actor=self.actor(options), reason="cancelled from the command line")
        text = f"session #{run.pk}: {run.status}" + (" (stop requested)" if not run.is_terminal else "")
        self.emit(selectors.run_to_dict(run), text)

    def do_attach(self, options):
        get_run(self, options["run"], options)
        raise ApplicationError(INTERACTIVE[0].upper() + INTERACTIVE[1:])
