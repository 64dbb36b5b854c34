"""`autopilot run PROJECT [PROMPT]`: start a run and (by default) follow it to the end."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from django.core.management.base import CommandError
from django.db import connection

from autopilot.cli_support import AutopilotCommand
from autopilot.errors import ApplicationError
from autopilot.models import Role
from autopilot.permissions import require_role
from autopilot.services import project_get
from blueprints.models import Task
from runs import selectors, services
from runs.management.commands._runcli import run_text, stream_steps
from runs.models import ExecutionRun


class Command(AutopilotCommand):
    help = (
        "Start a run of PROMPT (or of --task) in a fresh worktree. Foreground by default: executes it in this "
        "process, streams its steps, exits non-zero unless it succeeds. With --json the last line is the run. "
        "--full-auto hands the project to the manager (drive_full_auto)."
    )

    def add_arguments(self, parser):
        parser.add_argument("project", help="Project id, slug or name.")
        parser.add_argument("prompt", nargs="?", default="", help="What the agent should do (optional with --task or --full-auto).")
        parser.add_argument("--task", type=int, help="Task id to work on.")
        parser.add_argument("--agent", help="Agent backend (scripted, native, claude_code, codex, test_worker).")
        parser.add_argument("--model", help="Model name, e.g. anthropic:claude-sonnet-4-6 or openai:gpt-5-mini.")
        parser.add_argument("--role", default="code", help="code | test | docs")
        parser.add_argument("--max-budget", help="Max USD for this run (default: the project's).")
        parser.add_argument("--max-turns", type=int)
        parser.add_argument("--max-wall-seconds", type=int)
        parser.add_argument("--script", help="Scripted backend: a JSON list of actions, or @file.json.")
        parser.add_argument("--step-through", action="store_true", help="Pause before every step until advanced.")
        parser.add_argument("--background", action="store_true", help="Queue it for the workers and return at once.")
        parser.add_argument("--full-auto", action="store_true", help="Let the manager drive the project's tasks.")
        parser.add_argument("--until-empty", action="store_true", help="With --full-auto: until no task is left.")

    def handle(self, *args, **options):
        project = project_get(options["project"])
        actor = self.actor(options)
        if actor is not None:
            require_role(actor, project, Role.OPERATOR)
        if options["full_auto"]:
            return self.full_auto(project, options, actor)
        task = None
        if options["task"] is not None:
            task = Task.objects.filter(pk=options["task"], project=project).first()
            if task is None:
                raise ApplicationError(f"Project '{project.name}' has no task #{options['task']}.")
        if not options["prompt"] and task is None and not options["script"]:
            raise ApplicationError("Give a PROMPT, --task ID, or --full-auto.")
        run_settings = {}
        if options["script"]:
            text = options["script"]
            if text.startswith("@"):
                text = Path(text[1:]).read_text()
            try:
                run_settings["script"] = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ApplicationError(f"--script is not valid JSON: {exc}.") from exc
            options["agent"] = options["agent"] or "scripted"
            options["prompt"] = options["prompt"] or "scripted run"
        if options["step_through"]:
            run_settings["step_through"] = True
        run = services.run_create(
            project=project, prompt=options["prompt"], task=task, role=options["role"], agent_backend=options["agent"],
            model=options["model"], budget_usd=options["max_budget"], max_turns=options["max_turns"],
            max_wall_seconds=options["max_wall_seconds"], actor=actor, enqueue=options["background"],
            run_settings=run_settings,
        )
        if options["background"]:
            data = selectors.run_to_dict(run)
            self.emit(data, f"queued run #{run.pk} ({run.agent_backend}); follow it with `autopilot status {run.pk}`")
            return
        if not self.as_json:
            self.stdout.write(f"run #{run.pk} started ({run.agent_backend}{' — scripted (offline demo)' if run.agent_backend == 'scripted' else ''})")
        self.foreground(run, actor)

    def foreground(self, run: ExecutionRun, actor) -> None:
        from runs.worker import execute_run

        errors: list[BaseException] = []

        def work():
            try:
                execute_run(run.pk)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            finally:
                connection.close()

        thread = threading.Thread(target=work, name=f"run-{run.pk}", daemon=True)
        thread.start()
        try:
            stream_steps(self, run.pk, until=lambda: not thread.is_alive(), as_json=self.as_json)
        except KeyboardInterrupt:
            services.run_stop(run=run, actor=actor, reason="interrupted from the terminal")
            thread.join(timeout=30)
        if errors:
            raise errors[0]
        run = selectors.run_get(run.pk, with_steps=True)
        data = selectors.run_to_dict(run)
        self.emit(data, run_text(run, data))
        if run.status != ExecutionRun.Status.SUCCEEDED:
            raise CommandError(f"run #{run.pk} {run.status}: {run.status_reason}", returncode=1)

    def full_auto(self, project, options, actor):
        from autopilot.manager.drive import drive_full_auto

        return drive_full_auto(
            project=project, max_budget=options["max_budget"], until_empty=options["until_empty"],
            stdout=self.stdout, as_json=self.as_json, actor=actor,
        )
