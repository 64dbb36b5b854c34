"""`autopilot user create NAME [--superuser] [--password-stdin]`, `autopilot user token NAME [--rotate]`,
`autopilot user list`, `autopilot user unlock NAME`: accounts for the web UI and API tokens.

Run from a shell on the machine (whoever can open the database is the administrator here).
"""

from __future__ import annotations

import secrets
import sys

from django.contrib.auth import get_user_model

from autopilot import logins, services
from autopilot.cli_support import AutopilotCommand
from autopilot.errors import ApplicationError


class Command(AutopilotCommand):
    help = "Create users, print API tokens, list users, lift login locks."
    stealth_options = ("stdin",)

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True, metavar="{create,token,list,unlock}")

        def add(name: str, help_text: str):
            return self.add_action(sub, name, help_text)

        create = add("create", "Create a user (a password is generated and printed unless --password-stdin).")
        create.add_argument("name")
        create.add_argument("--superuser", action="store_true", help="Full access, including the admin.")
        create.add_argument("--email", default="")
        create.add_argument(
            "--password-stdin", action="store_true", help="Read the password from standard input."
        )

        token = add("token", "Print the user's API token (created on first use).")
        token.add_argument("name")
        token.add_argument("--rotate", action="store_true", help="Replace the token with a new one.")

        add("list", "List users.")

        unlock = add("unlock", "Lift the lock too many failed logins put on a user (from every address).")
        unlock.add_argument("name")

    def handle(self, *args, **options):
        getattr(self, f"do_{options['action']}")(options)

    def do_create(self, options):
        generated = None
        if options["password_stdin"]:
            stream = options.get("stdin") or sys.stdin
            password = stream.readline().rstrip("\r\n")
            if not password:
                raise ApplicationError("--password-stdin: standard input had no password.")
        else:
            password = generated = secrets.token_urlsafe(12)
        user = services.user_create(
            username=options["name"],
            password=password,
            superuser=options["superuser"],
            email=options["email"],
        )
        data = {"id": user.pk, "username": user.username, "superuser": user.is_superuser}
        text = f"created {'superuser' if user.is_superuser else 'user'} {user.username}"
        if generated:
            data["password"] = generated
            text += f"\npassword: {generated}  (shown once; change it in the admin or recreate the user)"
        self.emit(data, text)

    def do_token(self, options):
        user = get_user_model().objects.filter(username=options["name"]).first()
        if user is None:
            raise ApplicationError(f"No user '{options['name']}'.")
        if not user.is_active:
            raise ApplicationError(f"User '{user.username}' is inactive.")
        key = services.user_token(user=user, rotate=options["rotate"])
        self.emit({"username": user.username, "token": key}, key)

    def do_list(self, options):
        users = list(
            get_user_model()
            .objects.order_by("username")
            .values("id", "username", "email", "is_superuser", "is_active")
        )
        lines = [
            f"{u['id']:>4}  {u['username']:<24} {'superuser' if u['is_superuser'] else ''}"
            f"{'' if u['is_active'] else ' (inactive)'}"
            for u in users
        ]
        self.emit(users, "\n".join(lines) or "no users")

    def do_unlock(self, options):
        cleared = logins.user_unlock(username=options["name"])
        plural = "s" if cleared != 1 else ""
        text = (
            f"unlocked {options['name']} ({cleared} failed-login record{plural} cleared)"
            if cleared
            else f"{options['name']} was not locked out"
        )
        self.emit({"username": options["name"], "cleared": cleared}, text)
