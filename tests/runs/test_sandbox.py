"""The command sandbox and the path guard (DESIGN.md §4 trust model): what a run's commands, its
setup script and its test command can see, through the real guard, real bubblewrap and real runs."""

from __future__ import annotations

import json
import shlex
import shutil
import socket
import threading
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Permission

from runs import services
from runs.guard import command_paths, execute, parse_command, sandbox_readonly_paths
from runs.models import ExecutionRun, ExecutionStep
from runs.worker import execute_run
from tests.factories import ProjectFactory, UserFactory
from tests.gitrepo import git, make_repo
from tests.runs.helpers import run_in_thread, run_now, scripted, status_of, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
Status = ExecutionRun.Status
StepStatus = ExecutionStep.Status

assert shutil.which("bwrap"), "these tests need bubblewrap (apt-get install bubblewrap)"


def secret_key_path() -> Path:
    path = Path(django_settings.DATA_DIR) / "secret_key"
    assert path.is_file(), "the data directory has no secret_key"
    return path


def home_file() -> Path:
    """A regular file in the server user's home directory (never opened by the tests themselves)."""
    home = Path.home()
    found = sorted(p for p in home.iterdir() if p.is_file() and not p.is_symlink())
    assert found, f"no regular file in {home} to probe with"
    return found[0]


def probe(paths: list[Path | str]) -> str:
    """A one-line python3 command (no path argument the guard could see) reporting what it can read."""
    code = (
        f"import json, os; paths = {json.dumps([str(p) for p in paths])}; "
        "print('PROBE' + json.dumps([[p, ('dir:' + ','.join(sorted(os.listdir(p)))) if os.path.isdir(p) "
        "else ('file:' + open(p).read()) if os.path.exists(p) "
        "else 'error:FileNotFoundError'] for p in paths]))"
    )
    return shlex.join(["python3", "-c", code])


def probe_result(output: str) -> dict[str, str]:
    line = next(line for line in output.splitlines() if line.startswith("PROBE"))
    # Pairs, not an object: `{"…/secret_key": "…"}` is a secret-looking assignment the redactor masks.
    return dict(json.loads(line[len("PROBE") :]))


def waiting_step(run_id):
    return ExecutionStep.objects.filter(run_id=run_id, status=StepStatus.NEEDS_APPROVAL).first()


@pytest.fixture
def listener():
    """A TCP server on the host's loopback, to tell whether a sandboxed command has network."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    accepted: list[bool] = []

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(True)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    server.close()
    thread.join(5)


def network_probe(port: int) -> str:
    return (
        "python3 -c \"import socket\ntry:\n    socket.create_connection(('127.0.0.1', "
        f"{port}), timeout=3); print('NET-OPEN')\nexcept OSError as e:\n"
        "    print('NET-CLOSED', type(e).__name__)\""
    )


# --- The guard: path arguments ----------------------------------------------------------------------


@pytest.fixture
def root(tmp_path):
    work = tmp_path / "work"
    (work / "src").mkdir(parents=True)
    (work / "src" / "a.py").write_text("x = 1\n")
    return work


@pytest.mark.parametrize(
    "command",
    [
        "cat /etc/os-release",
        "wc -c /usr/share/outside.txt",
        "ls ~",
        "cat ~/.bashrc",
        "cat ../x",
        "cat src/../../x",
        "grep --file=/etc/passwd x .",
        "python3 -I/usr/include x.py",
        "make PREFIX=/opt/x",
        "git log -- /etc",
        "git diff --output=/usr/x",
    ],
    ids=[
        "absolute",
        "wc-absolute",
        "tilde",
        "tilde-file",
        "dotdot",
        "nested-dotdot",
        "opt-equals",
        "short-opt",
        "assignment",
        "git-after-dashdash",
        "git-output",
    ],
)
def test_paths_outside_the_worktree_need_approval_then_are_refused_in_full_auto(root, command):
    from runs.guard import Policy

    semi = Policy(root=root, autonomy_mode="semi_auto", allowlist=("make",))
    full = Policy(root=root, autonomy_mode="full_auto", allowlist=("make",))
    asked = semi.authorize("run_terminal", {"command": command})
    assert asked.action == "ask" and "outside the worktree" in asked.reason
    assert full.authorize("run_terminal", {"command": command}).action == "deny"
    assert semi.authorize("Bash", {"command": command}).action == "ask"  # Claude Code's Bash tool
    assert full.authorize("exec_command", {"cmd": command}).action == "deny"  # Codex


@pytest.mark.parametrize(
    "command",
    [
        "cat src/a.py",
        "cat {root}/src/a.py",
        "ls",
        "grep -rn /api/v1/ src",
        "git grep -n /usr/ -- src",
        "rg -e /etc/ src",
        "wc -c src/a.py",
        "ls /tmp",
        "python3 -c 'print(1)'",
    ],
    ids=[
        "relative",
        "absolute-inside",
        "bare",
        "grep-pattern",
        "git-grep-pattern",
        "rg-e-pattern",
        "wc-inside",
        "private-tmp",
        "python-code",
    ],
)
def test_paths_inside_the_worktree_are_allowed(root, command):
    from runs.guard import Policy

    verdict = Policy(root=root, autonomy_mode="full_auto").authorize(
        "run_terminal", {"command": command.format(root=root)}
    )
    assert verdict.action == "allow", verdict.reason


def test_a_path_into_the_data_directory_is_refused_in_every_mode(root):
    from runs.guard import Policy

    secret = secret_key_path()
    os_link = root / "data-link"
    os_link.symlink_to(Path(django_settings.DATA_DIR))
    commands = [
        f"cat {secret}",
        f"wc -c {secret}",
        "cat data-link/secret_key",
        f"ls --color=auto {secret.parent}",
        f"cat {django_settings.BASE_DIR}/README.md",
    ]
    for mode in ("semi_auto", "full_auto"):
        for allow_risky in (False, True):
            policy = Policy(
                root=root, autonomy_mode=mode, allowlist=("cat", "wc", "ls"), allow_risky=allow_risky
            )
            for command in commands:
                verdict = policy.authorize("run_terminal", {"command": command})
                assert verdict.action == "deny", (mode, allow_risky, command, verdict)
                assert "Autopilot's own files" in verdict.reason


def test_shell_commands_are_checked_too(root):
    from runs.guard import Policy

    policy = Policy(root=root, autonomy_mode="full_auto", allow_shell=True, allowlist=("cat", "ls"))
    assert policy.authorize("run_terminal", {"command": "ls src 2>/dev/null"}).action == "allow"
    assert policy.authorize("run_terminal", {"command": "cat src/a.py >/etc/x"}).action == "deny"
    assert policy.authorize("run_terminal", {"command": f"cat {secret_key_path()};"}).action == "deny"


def test_claude_code_file_tools_are_confined(root):
    from runs.guard import Policy

    policy = Policy(root=root, autonomy_mode="semi_auto")
    secret = str(secret_key_path())
    assert policy.authorize("Read", {"file_path": secret}).action == "deny"
    assert policy.authorize("Read", {"file_path": "/etc/os-release"}).action == "deny"
    assert policy.authorize("Glob", {"pattern": "/etc/*.conf"}).action == "deny"
    assert policy.authorize("Glob", {"pattern": "../**/*.py"}).action == "deny"
    assert policy.authorize("Glob", {"pattern": "~/.ssh/*"}).action == "deny"
    assert policy.authorize("Grep", {"pattern": "/etc/passwd", "path": "src"}).action == "allow"
    assert policy.authorize("Grep", {"pattern": "x", "path": str(Path(secret).parent)}).action == "deny"
    assert policy.authorize("Grep", {"pattern": "x", "glob": "/root/**"}).action == "deny"
    assert policy.authorize("Glob", {"pattern": "src/**/*.py"}).action == "allow"
    assert policy.authorize("Write", {"file_path": str(Path(secret).parent / "x")}).action == "deny"


@pytest.mark.parametrize(
    ("argv", "risky"),
    [
        (["git", "branch"], False),
        (["git", "branch", "-a", "-v"], False),
        (["git", "branch", "--show-current"], False),
        (["git", "branch", "-D", "main"], True),
        (["git", "branch", "-f", "main", "HEAD"], True),
        (["git", "branch", "new-one"], True),
        (["git", "branch", "-m", "main", "old"], True),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else str(v),
)
def test_git_branch_is_read_only_only_when_it_lists(argv, risky):
    from runs.guard import classify_command

    assert classify_command(argv)[0] is risky


def test_the_tmp_exception_holds_only_inside_the_sandbox(root, settings):
    assert command_paths(["ls", "/tmp/x"], root=root, sandboxed=True) == ("", "")
    assert command_paths(["ls", "/tmp/x"], root=root, sandboxed=False)[0] == "outside"


# --- The sandbox itself ---------------------------------------------------------------------------


def test_sandbox_hides_the_data_directory_the_home_and_the_server_checkout(project):
    # given a finished run (its worktree stays on disk) and a second run's worktree
    other = run_now(
        project, [{"write": "other-secret.txt", "content": "other run's work\n"}, {"finish": "ok"}]
    )
    run = run_now(project, [{"finish": "ok"}])
    worktree = Path(run.worktree_path)
    home = Path(django_settings.DATA_DIR) / "run-homes" / f"run-{run.pk}"
    targets = [
        secret_key_path(),
        Path(other.worktree_path) / "other-secret.txt",
        home_file(),
        Path(django_settings.BASE_DIR) / "manage.py",
        Path(project.repo_path) / "README.md",
        Path(django_settings.DATA_DIR),
    ]

    # when a command runs exactly as an approved step runs (guard.execute, no guard check at all)
    result = execute(
        parse_command(probe(targets), allow_shell=False), cwd=worktree, home=home, writable=[worktree, home]
    )

    # then none of them is readable inside the sandbox
    assert result.sandbox.startswith("bwrap") and result.exit_code == 0, result.output
    seen = probe_result(result.output)
    assert secret_key_path().read_text() not in result.output
    for target in targets[:-1]:
        assert seen[str(target)] == "error:FileNotFoundError", (target, seen)
    # the data directory shows only the skeleton leading to this run's worktree and HOME
    assert set(seen[str(django_settings.DATA_DIR)].removeprefix("dir:").split(",")) <= {
        "worktrees",
        "run-homes",
        "test-repos",
    }


def test_sandbox_shows_no_user_file_in_home_and_a_minimal_etc():
    # given a directory to run in (the data directory is hidden except what is bound)
    work = Path(django_settings.DATA_DIR) / "sandbox-probe"
    work.mkdir(exist_ok=True)
    home = Path.home()

    # when a command lists the user's home, /etc and /
    result = execute(
        parse_command(probe([home, "/etc", "/"]), allow_shell=False), cwd=work, home=work, writable=[work]
    )

    # then the home shows only the way to the Python interpreter in use (bound read-only), /etc only
    # what a toolchain needs, and / only system directories plus mount-point skeletons
    seen = probe_result(result.output)
    listed = set(seen[str(home)].removeprefix("dir:").split(",")) - {""}
    bound = [*sandbox_readonly_paths(), work]
    assert all(any(p == home / name or (home / name) in p.parents for p in bound) for name in listed), listed
    assert len(listed) < len(list(home.iterdir()))
    etc = set(seen["/etc"].removeprefix("dir:").split(","))
    assert {"passwd", "ld.so.cache", "ssl"} <= etc
    assert not etc & {
        "os-release",
        "shadow",
        "hostname",
        "ssh",
        "postgresql",
        "redis",
        "environment",
        "pip.conf",
    }
    assert (
        "file:" not in seen["/"] and "srv" not in seen["/"].split(",") and "boot" not in seen["/"].split(",")
    )


def test_python3_git_and_sh_work_inside_the_sandbox_for_a_repository_under_tmp(tmp_path, settings):
    # given a repository and the worktree root both under /tmp (the old sandbox hid all of /tmp)
    assert str(tmp_path).startswith("/tmp/")
    settings.AUTOPILOT_WORKTREE_ROOT = tmp_path / "worktrees"
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    project = ProjectFactory(repo_path=str(repo), autonomy_mode="full_auto", command_allowlist=["sh"])
    script = [
        {"edit": "a.txt", "old": "a\n", "new": "b\n"},
        {"run": "git status --short"},
        {"run": "git diff"},
        {"run": "git log --oneline"},
        {"run": "python3 -c 'import sys; print(\"py\", sys.version_info[0])'"},
        {"run": "sh -c 'echo from-sh'"},
        {"finish": "ok"},
    ]

    # when the run executes
    run = run_now(project, script)

    # then every command worked, sandboxed
    assert run.status == Status.SUCCEEDED, run.status_reason
    steps = list(run.steps.filter(kind="run_terminal").order_by("seq"))
    assert all(s.status == StepStatus.COMPLETED for s in steps), [(s.input, s.output) for s in steps]
    assert all(s.input["sandbox"].startswith("bwrap") for s in steps)
    status, diff, log, python, shell = (s.output for s in steps)
    assert "M a.txt" in status
    assert "-a\n+b" in diff
    assert "initial" in log
    assert "py 3" in python and "from-sh" in shell


def test_an_agent_cannot_commit_or_move_a_branch_from_the_sandbox(project):
    # given a run allowed (by the project's allowlist) to commit and to move refs
    base = git(project.repo_path, "rev-parse", "main")
    project.command_allowlist = ["git commit", "git update-ref"]
    project.autonomy_mode = "full_auto"
    project.save()
    run = run_now(
        project,
        [
            {"write": "x.txt", "content": "x\n"},
            {"run": "git update-ref refs/heads/main HEAD~0"},
            {"run": "git commit --allow-empty -m sneaky"},
            {"finish": "ok"},
        ],
    )

    # then both fail inside the sandbox (the repository's refs and objects are read-only), the base
    # branch is untouched and the worker committed the change on the run's branch
    update, commit = run.steps.filter(kind="run_terminal").order_by("seq")
    assert update.status == StepStatus.FAILED and commit.status == StepStatus.FAILED, (
        update.output,
        commit.output,
    )
    assert git(project.repo_path, "rev-parse", "main") == base
    assert git(project.repo_path, "show", f"{run.branch}:x.txt") == "x"
    assert "sneaky" not in git(project.repo_path, "log", "--format=%s", run.branch)


# --- Real runs through the guard -------------------------------------------------------------------


def test_semi_auto_outside_paths_wait_for_approval_and_still_see_nothing():
    # given a semi_auto run reading /etc/os-release and a file of the server user's home
    project = ProjectFactory(autonomy_mode="semi_auto")
    reviewer = UserFactory()
    target = home_file()
    run = scripted(project, [{"run": "cat /etc/os-release"}, {"run": f"wc -c {target}"}, {"finish": "done"}])
    thread = run_in_thread(run.pk)

    # when a human approves both
    for _ in range(2):
        step = wait_for(lambda: waiting_step(run.pk), message="an outside path did not ask for approval")
        assert "outside the worktree" in step.risk_reason
        services.run_approve(step=step, actor=reviewer, note="let it try")
        wait_for(lambda s=step: ExecutionStep.objects.get(pk=s.pk).status != StepStatus.NEEDS_APPROVAL)
    thread.join(30)

    # then the commands ran, in the sandbox, and found nothing there
    assert status_of(run.pk) == Status.SUCCEEDED
    cat, wc = ExecutionRun.objects.get(pk=run.pk).steps.filter(kind="run_terminal").order_by("seq")
    assert cat.status == StepStatus.FAILED and "No such file" in cat.output
    assert wc.status == StepStatus.FAILED and "No such file" in wc.output
    assert cat.input["sandbox"].startswith("bwrap")


def test_full_auto_refuses_outside_paths_and_the_data_directory():
    project = ProjectFactory(autonomy_mode="full_auto", command_allowlist=["cat"])
    secret = secret_key_path()
    run = run_now(
        project,
        [
            {"run": "cat /etc/os-release"},
            {"run": "wc -c /usr/share/common-licenses/GPL-3"},
            {"run": f"cat {secret}"},
            {"run": probe([secret])},
            {"finish": "ok"},
        ],
    )
    assert run.status == Status.SUCCEEDED
    os_release, wc, cat_secret, python = run.steps.filter(kind="run_terminal").order_by("seq")
    assert os_release.status == StepStatus.SKIPPED and "Refused in full_auto" in os_release.output
    assert wc.status == StepStatus.SKIPPED and "outside the worktree" in wc.output
    assert cat_secret.status == StepStatus.SKIPPED and "Autopilot's own files" in cat_secret.output
    # a path hidden inside program text is not seen by the guard; the sandbox still hides the file
    assert python.status == StepStatus.COMPLETED
    assert probe_result(python.output)[str(secret)] == "error:FileNotFoundError"
    assert secret.read_text() not in python.output


# --- Setup script and test command ----------------------------------------------------------------


def test_setup_script_is_sandboxed_without_network(tmp_path, listener):
    # given a setup script that tries to read the data directory, write outside the worktree and
    # reach a server on the host
    port, accepted = listener
    outside = tmp_path / "setup-was-here"
    repo_marker = Path(django_settings.DATA_DIR) / "setup-wrote-here"
    repo_marker.unlink(missing_ok=True)  # left by an unsandboxed run of this test
    script = (
        f"cat {secret_key_path()} || echo NO-SECRET\n"
        f"touch {outside} {repo_marker} || echo NO-WRITE\n"
        f"{network_probe(port)}\n"
        "touch .setup-done\n"
    )
    project = ProjectFactory(setup_script=script)

    # when a run starts
    run = run_now(project, [{"list": "."}, {"finish": "ok"}])

    # then the script ran in the sandbox: no secret, no write outside, no network
    setup = run.steps.get(kind="setup")
    assert run.status == Status.SUCCEEDED, run.status_reason
    assert setup.input["sandbox"].startswith("bwrap") and "no network" in setup.input["sandbox"]
    assert "NO-SECRET" in setup.output and secret_key_path().read_text() not in setup.output
    assert not outside.exists() and not repo_marker.exists()
    assert "NET-CLOSED" in setup.output and not accepted
    assert ".setup-done" in run.steps.get(kind="list_dir").output


def test_setup_script_gets_the_network_only_when_the_project_allows_it(listener):
    port, accepted = listener
    project = ProjectFactory(setup_script=network_probe(port), setup_network=True)
    run = run_now(project, [{"finish": "ok"}])
    setup = run.steps.get(kind="setup")
    assert "NET-OPEN" in setup.output and accepted, setup.output
    assert "network on" in setup.input["sandbox"]
    assert secret_key_path().read_text() not in setup.output


def test_setup_script_says_unsandboxed_without_bwrap(settings):
    settings.AUTOPILOT_SANDBOX = "off"
    project = ProjectFactory(setup_script="echo plain")
    run = run_now(project, [{"finish": "ok"}])
    setup = run.steps.get(kind="setup")
    assert setup.input["sandbox"] == "unsandboxed" and "plain" in setup.output


def test_test_command_is_sandboxed_the_same_way(tmp_path, listener):
    # given a test command (with shell syntax: the owner wrote it) that probes the sandbox
    port, accepted = listener
    outside = tmp_path / "tests-were-here"
    repo = make_repo(tmp_path / "py", {"test_ok.py": "def test_ok():\n    assert True\n"})
    command = (
        f"cat {secret_key_path()} || echo NO-SECRET; touch {outside} || echo NO-WRITE; "
        f"{network_probe(port)}; "
        "python3 -m pytest -q -p no:cacheprovider"
    )
    project = ProjectFactory(repo_path=str(repo), test_command=command)
    run = services.run_create(
        project=project, prompt="run the tests", agent_backend="test_worker", enqueue=False
    )

    # when the test worker runs it
    execute_run(run.pk)

    # then it ran in the sandbox and the tests still passed
    run.refresh_from_db()
    step = run.steps.get(kind="test")
    assert run.status == Status.SUCCEEDED, (run.status_reason, step.output)
    assert step.input["sandbox"].startswith("bwrap") and "no network" in step.input["sandbox"]
    assert "NO-SECRET" in step.output and secret_key_path().read_text() not in step.output
    assert "NET-CLOSED" in step.output and not accepted
    assert not outside.exists()
    assert step.input["counts"]["passed"] == 1


def test_setup_network_is_in_the_project_api(client, owner, project):
    # setup_network changes what executes: the owner needs the right to register repositories too
    owner.user_permissions.add(Permission.objects.get(codename="register_repository"))
    client.force_login(owner)
    response = client.patch(
        f"/api/projects/{project.pk}/", {"setup_network": True}, content_type="application/json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["setup_network"] is True
    project.refresh_from_db()
    assert project.setup_network is True
    bad = client.patch(
        f"/api/projects/{project.pk}/", {"setup_network": "perhaps"}, content_type="application/json"
    )
    assert bad.status_code == 400 and "setup_network" in bad.content.decode()


# --- Agent CLIs -----------------------------------------------------------------------------------


def test_claude_code_runs_inside_the_sandbox(project, fake_llm, settings):
    # given Claude Code (the real bundled CLI against the fake model server) in full_auto, whose model
    # reads the secret key with its Read tool and then through a command that names no path
    from runs.backends.claude_code import ClaudeCodeBackend
    from tests.fakellm import text, tool

    assert ClaudeCodeBackend.available()[0], ClaudeCodeBackend.available()[1]
    settings.ANTHROPIC_BASE_URL = fake_llm.url
    settings.ANTHROPIC_API_KEY = "sk-test-fake-key"
    settings.AUTOPILOT_CLAUDE_CODE_ENV = {"CLAUDE_CODE_MAX_RETRIES": "1"}
    project.autonomy_mode = "full_auto"
    project.save()
    secret = secret_key_path()
    fake_llm.script(
        [
            tool("Read", {"file_path": str(secret)}),
            tool("Bash", {"command": probe([secret, Path.home() / "does-not-matter", "/etc/os-release"])}),
            tool("Bash", {"command": "cat /etc/os-release"}),
            text("done"),
        ]
    )
    run = services.run_create(
        project=project,
        prompt="look around",
        agent_backend="claude_code",
        model="claude-sonnet-4-5",
        enqueue=False,
        max_wall_seconds=90,
    )

    # when the run executes
    assert execute_run(run.pk) == "succeeded"

    # then the Read was refused by the guard, the outside path refused in full_auto, and the command
    # the guard let through ran in the sandbox, where the secret key does not exist
    read = run.steps.get(kind="read_file")
    assert read.status == StepStatus.SKIPPED and "outside the workspace" in read.output
    python, cat = run.steps.filter(kind="run_terminal").order_by("seq")
    assert python.status == StepStatus.COMPLETED, python.output
    seen = probe_result(python.output)
    assert (
        seen[str(secret)] == "error:FileNotFoundError"
        and seen["/etc/os-release"] == "error:FileNotFoundError"
    )
    assert cat.status == StepStatus.SKIPPED and "Refused in full_auto" in cat.output
    assert secret.read_text() not in json.dumps([m.body for m in fake_llm.model_requests()])


def test_codex_cli_runs_inside_the_sandbox(project, tmp_path, settings):
    # given a stand-in for the codex CLI (the real one is an optional npm install): an executable that
    # speaks `codex exec --json` and reports, as its answer, what it can read from where it runs
    cli_dir = tmp_path / "codex-install" / "bin"
    cli_dir.mkdir(parents=True)
    cli = cli_dir / "codex"
    secret = secret_key_path()
    other = Path(project.repo_path) / "README.md"
    cli.write_text(
        "#!/usr/bin/env python3\n"
        "import json, os\n"
        f"paths = {json.dumps([str(secret), str(other), home_file().as_posix()])}\n"
        "seen = [[p, 'visible' if os.path.exists(p) else 'hidden'] for p in paths]\n"
        "for event in ({'type': 'thread.started', 'thread_id': 't-1'},\n"
        "              {'type': 'item.completed',\n"
        "               'item': {'type': 'agent_message', 'text': json.dumps(seen)}},\n"
        "              {'type': 'turn.completed', 'usage': {'input_tokens': 1, 'output_tokens': 1}}):\n"
        "    print(json.dumps(event), flush=True)\n"
    )
    cli.chmod(0o755)
    settings.AUTOPILOT_CODEX_CLI = str(cli)
    settings.OPENAI_API_KEY = "sk-test-codex"  # run creation refuses a codex run without a key
    run = services.run_create(project=project, prompt="look around", agent_backend="codex", enqueue=False)

    # when the run executes
    status = execute_run(run.pk)
    run.refresh_from_db()
    assert status == "succeeded", (run.status_reason, run.error)

    # then the CLI saw neither Autopilot's data directory, nor the repository's checkout, nor the home
    seen = dict(json.loads(run.result_summary))  # pairs: the redactor masks `{"…secret_key": "…"}`
    assert seen == {str(secret): "hidden", str(other): "hidden", home_file().as_posix(): "hidden"}, seen
