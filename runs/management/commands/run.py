"""`autopilot run [PROJECT] PROMPT`: start a run and (by default) follow it to the end."""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path

from django.core.management.base import CommandError
from django.db import connection

from autopilot.cli_support import resolve_project
from autopilot.errors import ApplicationError, NotFound
from autopilot.manager.drive import drive_full_auto
from autopilot.models import Role
from autopilot.permissions import require_role
from autopilot.services import project_get
from blueprints.selectors import task_get
from runs import selectors, services
from runs.management.commands._runcli import (
    RunCliCommand,
    check_output_dir,
    open_in_browser,
    parse_budget,
    resolve_model,
    run_text,
    run_url,
    save_trajectory,
    stream_steps,
)
from runs.models import ExecutionRun
from runs.worker import execute_run

SCRIPTED = " — scripted (offline demo)"


class Command(RunCliCommand):
    help = (
        "Start a run of PROMPT (or of --issue) in a fresh worktree of the project (--project, else the one "
        "containing this directory). Foreground by default: streams its steps, writes its trajectory "
        "(YYYYMMDD/HHMMSS-<slug>.json and .rlog), exits non-zero unless it succeeds. With --json the last "
        "line is the run. --full-auto hands the project to the manager."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "first",
            nargs="?",
            metavar="PROMPT",
            help="What the agent should do. `run PROJECT PROMPT` also works.",
        )
        parser.add_argument("second", nargs="?", help=argparse.SUPPRESS, metavar="…")
        parser.add_argument(
            "--project", help="Project id, slug or name (default: the one containing the current directory)."
        )
        parser.add_argument(
            "--task", "--issue", dest="task", metavar="ID", help="Task (issue) id to work on."
        )
        parser.add_argument(
            "--agent", help="Agent backend (scripted, native, claude_code, codex, test_worker)."
        )
        parser.add_argument(
            "-m",
            "--model",
            help="Model: sonnet, opus, haiku, or a full name such as "
            "anthropic:claude-sonnet-4-6 or openai:gpt-5-mini.",
        )
        parser.add_argument("--role", default="code", help="code | test | docs")
        parser.add_argument("-b", "--max-budget", help="Max USD for this run (default: the project's).")
        parser.add_argument("--max-turns", type=int)
        parser.add_argument("--max-wall-seconds", type=int)
        parser.add_argument(
            "-o",
            "--output-dir",
            help="Write the trajectory files under this directory (default: AUTOPILOT_TRAJECTORY_DIR).",
        )
        parser.add_argument(
            "-s", "--slug", default="", help="Name part of the trajectory files (default: from the prompt)."
        )
        parser.add_argument(
            "--ui", action="store_true", help="Print the run's web page (and open it on a terminal)."
        )
        parser.add_argument("--script", help="Scripted backend: a JSON list of actions, or @file.json.")
        parser.add_argument(
            "--step-through", action="store_true", help="Pause before every step until advanced."
        )
        parser.add_argument(
            "--background", action="store_true", help="Queue it for the workers and return at once."
        )
        parser.add_argument(
            "--from",
            dest="from_ref",
            metavar="BRANCH",
            help="Start the run's branch from BRANCH (default: the base branch; a task's run starts "
            "from the integration branch).",
        )
        parser.add_argument(
            "--full-auto", action="store_true", help="Let the manager drive the project's tasks."
        )
        parser.add_argument(
            "--until-empty", action="store_true", help="With --full-auto: until no task is left."
        )

    def _project_and_prompt(self, options, actor):
        first, second, named = options["first"], options["second"], options["project"]
        if second is not None:
            if named:
                raise ApplicationError(
                    "Give the project once: `run --project NAME PROMPT` or `run PROJECT PROMPT`."
                )
            return project_get(first), second
        if first is not None and not named and (options["task"] or options["full_auto"] or options["script"]):
            try:  # the older form `run PROJECT --task ID` / `run PROJECT --full-auto`
                return project_get(first), ""
            except NotFound:
                pass
        return resolve_project(named, user=actor), first or ""

    def handle(self, *args, **options):
        actor = self.actor(options)
        budget = parse_budget(options["max_budget"])
        check_output_dir(options["output_dir"])
        project, prompt = self._project_and_prompt(options, actor)
        if actor is not None:
            require_role(actor, project, Role.OPERATOR)
        if options["full_auto"]:
            if options["from_ref"]:
                raise ApplicationError(
                    "--from starts one run from a branch; it does not go with --full-auto."
                )
            return self.full_auto(project, options, actor, budget)
        task = task_get(project, options["task"]) if options["task"] else None
        if not prompt and task is None and not options["script"]:
            raise ApplicationError("Give a PROMPT, --issue ID, or --full-auto.")
        run_settings = {}
        if options["script"]:
            text = options["script"]
            if text.startswith("@"):
                try:
                    text = Path(text[1:]).read_text()
                except OSError as exc:
                    raise ApplicationError(f"--script: cannot read '{text[1:]}': {exc.strerror}.") from exc
            try:
                run_settings["script"] = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ApplicationError(f"--script is not valid JSON: {exc}.") from exc
            options["agent"] = options["agent"] or "scripted"
            prompt = prompt or "scripted run"
        if options["step_through"]:
            run_settings["step_through"] = True
        run = services.run_create(
            project=project,
            prompt=prompt,
            task=task,
            role=options["role"],
            agent_backend=options["agent"],
            model=resolve_model(options["model"]),
            budget_usd=budget,
            max_turns=options["max_turns"],
            max_wall_seconds=options["max_wall_seconds"],
            actor=actor,
            enqueue=options["background"],
            run_settings=run_settings,
            **({"from_ref": options["from_ref"]} if options["from_ref"] else {}),
        )
        if options["background"]:
            data = selectors.run_to_dict(run)
            if options["ui"]:
                data["url"] = run_url(run)
                open_in_browser(self, data["url"])
            self.emit(
                data,
                f"queued run #{run.pk} ({run.agent_backend}); follow it with "
                f"`autopilot session logs {run.pk} --follow`"
                + (f"\n  {data['url']}" if options["ui"] else ""),
            )
            return
        if not self.as_json:
            self.stdout.write(
                f"run #{run.pk} started in {project.name} "
                f"({run.agent_backend}{SCRIPTED if run.agent_backend == 'scripted' else ''})"
            )
        if options["ui"]:
            self.show_url(run)
        self.foreground(run, actor, output_dir=options["output_dir"], slug=options["slug"])

    def show_url(self, run: ExecutionRun) -> None:
        url = run_url(run)
        if self.as_json:
            self.stdout.write(json.dumps({"run": run.pk, "url": url}))
        else:
            self.stdout.write(f"  page: {url}")
        open_in_browser(self, url)

    def foreground(self, run: ExecutionRun, actor, *, output_dir: str | None = None, slug: str = "") -> None:
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
        files = save_trajectory(run, output_dir=output_dir, slug=slug)
        data = {**selectors.run_to_dict(run), "trajectory": files}
        self.emit(
            data, run_text(run, data) + f"\n  trajectory: {files['json']}\n              {files['rlog']}"
        )
        if run.status != ExecutionRun.Status.SUCCEEDED:
            raise CommandError(f"run #{run.pk} {run.status}: {run.status_reason}", returncode=1)

    def full_auto(self, project, options, actor, budget):
        return drive_full_auto(
            project=project,
            max_budget=budget,
            until_empty=options["until_empty"],
            stdout=self.stdout,
            as_json=self.as_json,
            actor=actor,
        )
