"""`autopilot session list|show|view|start|prompt|logs|cancel|stop|attach|takeover|handback`: runs
("sessions") from the terminal.

Interactive sessions (runs.interactive): `start TASK --type interactive [--agent claude_code|codex]`
opens a recorded tmux session in a fresh worktree of the task and attaches this terminal to it (on a
TTY; `--no-attach` / `--json` just print how to attach); `attach ID` attaches again (detach with
tmux's prefix + d: the session keeps running); `stop ID` ends it with a commit of what changed.
`attach ID` on an autonomous run follows its steps live and sends each line typed as a message to the
agent until Ctrl-D. `takeover ID` pauses an autonomous run at its next step boundary and opens its
worktree in a terminal; `handback ID --note TEXT` gives it back to the agent.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading

from django.utils import timezone

from autopilot.cli_support import resolve_project, to_jsonable
from autopilot.errors import ApplicationError, NotFound
from autopilot.models import Role
from autopilot.permissions import require_role
from blueprints.models import Task
from blueprints.selectors import task_get
from runs import interactive, selectors, services
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
from runs.models import ExecutionRun, RunKind

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
                r.kind,
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
            show = self.add_action(sub, name, "One session with its steps.")
            show.add_argument("run", metavar="ID")
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
        start.add_argument(
            "--no-attach",
            action="store_true",
            help="Interactive: open the session and return (attach later with `session attach ID`).",
        )
        stop = self.add_action(
            sub, "stop", "End a session: an interactive one commits what changed; an agent stops gracefully."
        )
        stop.add_argument("run", metavar="ID")
        attach = self.add_action(
            sub,
            "attach",
            "Attach this terminal: an interactive session's tmux (detach: prefix + d); an agent's run: "
            "follow its steps and send each line typed as a message (Ctrl-D ends).",
        )
        attach.add_argument("run", metavar="ID")
        takeover = self.add_action(
            sub, "takeover", "Pause a running agent at its next step and open its worktree in a terminal."
        )
        takeover.add_argument("run", metavar="ID")
        takeover.add_argument(
            "--timeout", type=float, default=120.0, help="Seconds to wait for the pause (default 120)."
        )
        takeover.add_argument("--no-attach", action="store_true", help="Open the terminal but do not attach.")
        handback = self.add_action(
            sub, "handback", "Give a taken-over run back to its agent, with a note (what you did, what next)."
        )
        handback.add_argument("run", metavar="ID")
        handback.add_argument("--note", default="", help="The note the agent's next turn receives.")

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
        if options["type"]:
            qs = qs.filter(kind=options["type"])
        runs = list(qs.prefetch_related("steps")[: options["limit"]])
        data = [
            {
                **selectors.run_to_dict(r),
                "project_name": r.project.name,
                "type": r.kind,
                "duration_seconds": _duration(r),
            }
            for r in runs
        ]
        self.emit({"runs": data}, _table(runs))

    def do_show(self, options):
        run = get_run(self, options["run"], options)
        run = selectors.run_get(run.pk, with_steps=True)
        data = {**selectors.run_to_dict(run), "project_name": run.project.name, "type": run.kind}
        self.emit(data, run_text(run, data) + "\n" + "\n".join(step_line(s) for s in run.steps.all()))

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
        actor = self.actor(options)
        if options["type"] == "interactive":
            return self.start_interactive(options, actor)
        priority = parse_priority(options["priority"])
        budget = parse_budget(options["max_budget"])
        check_output_dir(options["output_dir"])
        task = self.task(options, actor)
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

    def task(self, options, actor) -> Task:
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
        return task

    def start_interactive(self, options, actor):
        for flag in ("queue", "max_budget", "output_dir"):
            if options.get(flag):
                name = "--" + flag.replace("_", "-")
                raise ApplicationError(
                    f"{name} is for autonomous sessions; an interactive one has no agent run."
                )
        task = self.task(options, actor)
        run = interactive.start(
            task=task, actor=actor, agent=options["agent"], model=resolve_model(options["model"])
        )
        self.emit(
            {**selectors.run_to_dict(run), "type": run.kind, "attach": interactive.attach_argv(run)},
            f"interactive session #{run.pk} open on task #{task.pk}: {task.title}\n"
            f"  worktree {run.worktree_path} (branch {run.branch})\n"
            f"  attach: `autopilot session attach {run.pk}`; end it: `autopilot session stop {run.pk}`",
        )
        if not options["no_attach"]:
            self.exec_attach(run)

    def exec_attach(self, run: ExecutionRun) -> None:
        """Replace this process by `tmux attach` when on a terminal (never with --json or in a pipe)."""
        if self.as_json or not (sys.stdin.isatty() and sys.stdout.isatty()):
            return
        argv = interactive.attach_argv(run)
        self.stdout.flush()
        os.execvp(argv[0], argv)

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

    def do_stop(self, options):
        run = get_run(self, options["run"], options, Role.OPERATOR)
        run = interactive.stop(run, actor=self.actor(options))
        text = f"session #{run.pk}: {run.status}" + (
            f" ({run.status_reason})" if run.is_terminal else " (stop requested)"
        )
        self.emit({**selectors.run_to_dict(run), "type": run.kind}, text)

    def do_attach(self, options):
        run = get_run(self, options["run"], options, Role.OPERATOR)
        if run.kind == RunKind.INTERACTIVE or interactive.paused(run):
            if run.kind != RunKind.INTERACTIVE:
                interactive.open_takeover(run)
            if not interactive.is_live(run):
                raise ApplicationError(f"Session #{run.pk} has no open terminal ({run.status}).")
            if not (sys.stdin.isatty() and sys.stdout.isatty()):
                raise ApplicationError(
                    f"Attaching needs a terminal; from a script use: {' '.join(interactive.attach_argv(run))}"
                )
            self.exec_attach(run)
            return
        self.follow_and_message(run, self.actor(options))

    def follow_and_message(self, run: ExecutionRun, actor) -> None:
        """Follow an agent's steps live; each line read from stdin is a message to it; Ctrl-D ends."""
        lines: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            for line in sys.stdin:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=read, name="attach-stdin", daemon=True).start()
        if not self.as_json:
            self.stderr.write(f"following session #{run.pk}: type a message and Enter; Ctrl-D detaches")
        state = {"eof": False}

        def until() -> bool:
            while not lines.empty():
                line = lines.get()
                if line is None:
                    state["eof"] = True
                    break
                if line.strip():
                    message = services.run_message(run=run, body=line, actor=actor)
                    self.emit(
                        {"message": message.pk, "run": run.pk, "body": message.body},
                        f"  → message {message.pk} sent",
                    )
            status = ExecutionRun.objects.values_list("status", flat=True).get(pk=run.pk)
            return state["eof"] or status in ExecutionRun.TERMINAL

        stream_steps(self, run.pk, until=until, poll=0.3, as_json=self.as_json)
        final = selectors.run_get(run.pk)
        self.emit(
            {"run": final.pk, "status": final.status, "detached": state["eof"]},
            f"run #{final.pk} {final.status}" + (" (detached)" if state["eof"] else ""),
        )

    def do_takeover(self, options):
        run = get_run(self, options["run"], options, Role.OPERATOR)
        if options["timeout"] < 0:
            raise ApplicationError("--timeout must be zero or more seconds.")
        interactive.takeover(run, actor=self.actor(options))
        if not interactive.wait_paused(run, timeout=options["timeout"]):
            run.refresh_from_db()
            self.emit(
                {"run": run.pk, "status": run.status, "paused": False},
                f"take-over of run #{run.pk} requested ({run.status}); it pauses at its next step: "
                f"`autopilot session attach {run.pk}` opens the terminal once it has",
            )
            return
        interactive.open_takeover(run)
        run.refresh_from_db()
        self.emit(
            {"run": run.pk, "status": run.status, "paused": True, "attach": interactive.attach_argv(run)},
            f"run #{run.pk} paused and taken over; its worktree is open in a terminal\n"
            f"  attach: `autopilot session attach {run.pk}`; give it back: "
            f'`autopilot session handback {run.pk} --note "..."`',
        )
        if not options["no_attach"]:
            self.exec_attach(run)

    def do_handback(self, options):
        run = get_run(self, options["run"], options, Role.OPERATOR)
        result = interactive.handback(run, note=options["note"], actor=self.actor(options))
        files = ", ".join(f"{f['path']} (+{f['added']} -{f['removed']})" for f in result["files"]) or "none"
        self.emit(result, f"run #{run.pk} handed back to its agent; files you changed: {files}")
