"""The `autopilot` console script: every subcommand is a Django management command.

`autopilot serve`, `autopilot blueprint ingest …`, `autopilot run …` are the same as
`python manage.py serve`, … so each app keeps its commands in its own management/commands/.
`autopilot --help` lists Autopilot's own commands by group, one line each; Django's commands
(migrate, createsuperuser, shell, …) are reached as `autopilot manage COMMAND …`.
"""

from __future__ import annotations

import os
import sys

OUR_APPS = ("autopilot", "blueprints", "runs")

# Command name → group in `autopilot --help`. A command of ours that is not listed goes to "Other".
GROUPS: dict[str, tuple[str, ...]] = {
    "Projects": ("project",),
    "Blueprints & plan": ("blueprint", "plan"),
    "Tasks / issues": ("task", "issue"),
    "Runs & sessions": (
        "run",
        "resume",
        "session",
        "status",
        "stop",
        "message",
        "approve",
        "reject",
        "analyze",
        "replay",
        "compare",
        "export",
        "import_run",
        "align",
    ),
    "Manager & queue": ("start", "manager", "queue", "tick", "reconcile"),
    "Integration": ("integration",),
    "MCP": ("mcp",),
    "Server & setup": ("serve", "setup", "user", "demo", "completion", "manage"),
}
MANAGE_HELP = "Django's own commands: `autopilot manage migrate`, `autopilot manage shell`, …"


def our_commands() -> dict[str, str]:
    """{command name: app} for Autopilot's commands (Django must be set up)."""
    from django.core.management import get_commands

    return {name: app for name, app in get_commands().items() if app in OUR_APPS and not name.startswith("_")}


def command_help(name: str, app: str) -> str:
    from django.core.management import load_command_class

    try:
        text = str(load_command_class(app, name).help or "")
    except Exception:  # a broken command must not break the help of all the others
        text = ""
    text = " ".join(text.split())
    first = text.split(". ", 1)[0].rstrip(".")  # one line: the first sentence
    return first if len(first) <= 100 else first[:99] + "…"


def grouped_commands() -> list[tuple[str, list[tuple[str, str]]]]:
    """[(group, [(command, one-line help), …]), …] in display order."""
    commands = our_commands()
    lines = {name: command_help(name, app) for name, app in commands.items()}
    lines["manage"] = MANAGE_HELP
    placed: set[str] = set()
    groups = []
    for group, names in GROUPS.items():
        rows = [(name, lines[name]) for name in names if name in lines]
        placed.update(name for name, _ in rows)
        if rows:
            groups.append((group, rows))
    rest = sorted(name for name in lines if name not in placed)
    if rest:
        groups.append(("Other", [(name, lines[name]) for name in rest]))
    return groups


def main_help() -> str:
    groups = grouped_commands()
    width = max(len(name) for _, rows in groups for name, _ in rows) + 2
    out = [
        "usage: autopilot COMMAND [ARGS] [--json] [--user NAME]",
        "",
        "Autopilot runs AI coding agents on your git repositories. Commands that take a project use",
        "--project NAME, else the project containing the current directory, else the default project",
        "(`autopilot project set-default`), else the current git repository (registered on first use).",
    ]
    for group, rows in groups:
        out += ["", f"{group}:"]
        out += [f"  {name:<{width}}{text}" for name, text in rows]
    out += [
        "",
        "`autopilot COMMAND --help` shows a command's options; "
        "`autopilot completion bash|zsh` prints a shell completion script.",
    ]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autopilot.settings")
    from django.core.management import execute_from_command_line

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        if len(args) > 1 and args[0] == "help":  # `autopilot help run` = `autopilot run --help`
            execute_from_command_line(["autopilot", args[1], "--help"])
            return
        import django

        django.setup()
        sys.stdout.write(main_help())
        return
    if args[0] == "manage":  # Django's own commands, with Django's own help
        execute_from_command_line(["autopilot", *args[1:]])
        return
    if not args[0].startswith("-"):
        import django
        from django.core.management import get_commands

        django.setup()
        if args[0] not in get_commands():
            sys.stderr.write(f"error: unknown command '{args[0]}' (`autopilot --help` lists the commands)\n")
            sys.exit(2)
    execute_from_command_line(["autopilot", *args])


if __name__ == "__main__":
    main()
