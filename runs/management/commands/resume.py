"""`autopilot resume RUN | --continue | --trajectory FILE [-p PROMPT] [-b USD]`: continue a finished run."""

from __future__ import annotations

from pathlib import Path

from autopilot.cli_support import resolve_project
from autopilot.errors import ApplicationError
from autopilot.models import Role
from autopilot.permissions import require_role
from runs import selectors, services, trajectory
from runs.management.commands._runcli import RunCliCommand, check_output_dir, get_run, parse_budget
from runs.management.commands.run import Command as RunCommand
from runs.models import ExecutionRun

DEFAULT_PROMPT = "Continue where you left off and finish the task."


class Command(RunCliCommand):
    help = (
        "Continue a finished or interrupted run (same agent session and worktree when possible): RUN, "
        "--continue (the project's most recent run) or --trajectory FILE (a run's .json trajectory)."
    )

    def add_arguments(self, parser):
        parser.add_argument("run", nargs="?", help="Run id to resume.")
        parser.add_argument("prompt_arg", nargs="?", metavar="PROMPT", help="What to do next (same as -p).")
        parser.add_argument(
            "-c",
            "--continue",
            dest="cont",
            action="store_true",
            help="Resume the most recent run of the project (--project, else this directory's).",
        )
        parser.add_argument(
            "-t", "--trajectory", metavar="FILE", help="Resume the run this trajectory file records."
        )
        parser.add_argument("-p", "--prompt", help=f"What to do next (default: '{DEFAULT_PROMPT}').")
        parser.add_argument(
            "-b", "--max-budget", help="Max USD for the resumed run (default: the original's)."
        )
        parser.add_argument("--project", help="With --continue: the project (id, slug or name).")
        parser.add_argument("-o", "--output-dir", help="Write the trajectory files under this directory.")
        parser.add_argument("-s", "--slug", default="", help="Name part of the trajectory files.")
        parser.add_argument("--background", action="store_true", help="Queue it instead of running it here.")

    def _source(self, options, actor) -> ExecutionRun:
        given = [bool(options["run"]), options["cont"], bool(options["trajectory"])]
        if sum(given) != 1:
            raise ApplicationError(
                "Say which run to resume: RUN, --continue, or --trajectory FILE (one of them)."
            )
        if options["run"]:
            return get_run(self, options["run"], options, Role.OPERATOR)
        if options["cont"]:
            project = resolve_project(options["project"], user=actor)
            run = selectors.run_list(project=project).first()
            if run is None:
                raise ApplicationError(
                    f"Project '{project.name}' has no run to continue yet "
                    "(start one with `autopilot run PROMPT`)."
                )
            return get_run(self, run.pk, options, Role.OPERATOR)
        data = trajectory.load_file(Path(options["trajectory"]).expanduser())
        source = data["run"]
        run = (
            ExecutionRun.objects.filter(pk=source.get("id")).select_related("project").first()
            if isinstance(source.get("id"), int)
            else None
        )
        if (
            run is None
            or run.project.slug != (source.get("project") or {}).get("slug")
            or (run.backend_session_id or "") != (source.get("session_id") or "")
        ):
            session = source.get("session_id") or "-"
            raise ApplicationError(
                f"The run this trajectory records (#{source.get('id')}, session {session}) "
                "is not in this Autopilot; import it first with `autopilot import_run FILE PROJECT`."
            )
        return get_run(self, run.pk, options, Role.OPERATOR)

    def handle(self, *args, **options):
        actor = self.actor(options)
        budget = parse_budget(options["max_budget"])
        check_output_dir(options["output_dir"])
        if options["prompt"] and options["prompt_arg"]:
            raise ApplicationError("Give the prompt once: as PROMPT or with -p.")
        prompt = options["prompt"] or options["prompt_arg"] or DEFAULT_PROMPT
        run = self._source(options, actor)
        if actor is not None:
            require_role(actor, run.project, Role.OPERATOR)
        new = services.run_resume(
            run=run, prompt=prompt, actor=actor, enqueue=options["background"], budget_usd=budget
        )
        if options["background"]:
            self.emit(selectors.run_to_dict(new), f"queued run #{new.pk} resuming #{run.pk}")
            return
        runner = RunCommand(stdout=self.stdout, stderr=self.stderr)
        runner.as_json = self.as_json
        if not self.as_json:
            self.stdout.write(f"run #{new.pk} resumes #{run.pk}")
        runner.foreground(new, actor, output_dir=options["output_dir"], slug=options["slug"])
