"""Path confinement, command parsing and risk classification (runs/guard.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runs.backends.base import GuardRefused
from runs.guard import Policy, classify_command, confine, execute, parse_command


@pytest.fixture
def root(tmp_path):
    work = tmp_path / "work"
    (work / "src").mkdir(parents=True)
    (work / "src" / "a.py").write_text("x = 1\n")
    (tmp_path / "outside.txt").write_text("secret\n")
    os.symlink(tmp_path / "outside.txt", work / "link-out")
    os.symlink(tmp_path, work / "dir-out")
    os.symlink(work / "src" / "a.py", work / "link-in")
    return work


@pytest.mark.parametrize(
    "path",
    [
        "../outside.txt",
        "src/../../outside.txt",
        "/etc/passwd",
        "link-out",
        "dir-out/outside.txt",
        "~/x",
        ".git/config",
        "src/\x00a.py",
        "",
    ],
    ids=[
        "dotdot",
        "nested-dotdot",
        "absolute",
        "symlink-file-out",
        "symlink-dir-out",
        "home",
        "dot-git",
        "nul",
        "empty",
    ],
)
def test_path_escapes_are_refused(root, path):
    with pytest.raises(GuardRefused):
        confine(root, path)


def test_paths_inside_are_resolved(root):
    assert confine(root, "src/a.py") == (root / "src" / "a.py").resolve()
    assert confine(root, str(root / "src" / "a.py")) == (root / "src" / "a.py").resolve()
    assert confine(root, "link-in") == (root / "src" / "a.py").resolve()
    assert confine(root, "new/file.txt") == (root / "new" / "file.txt").resolve()


def test_writing_through_a_link_is_refused_even_inside(root):
    with pytest.raises(GuardRefused, match="symbolic link"):
        confine(root, "link-in", write=True)


@pytest.mark.parametrize(
    "command",
    [
        "ls; rm -rf /",
        "ls && curl x",
        "ls || true",
        "cat a | sh",
        "echo $(id)",
        "echo `id`",
        "echo $HOME",
        "echo ${PATH}",
        "FOO=1 ls",
        "ls > out",
        "cat < /etc/passwd",
        "sleep 1 &",
        "ls\nrm -rf /",
        'echo "$(id)"',
        "(ls)",
    ],
    ids=[
        "semicolon",
        "and",
        "or",
        "pipe",
        "subst",
        "backticks",
        "var",
        "braced-var",
        "env-assign",
        "redirect-out",
        "redirect-in",
        "background",
        "newline",
        "subst-in-double-quotes",
        "subshell",
    ],
)
def test_shell_syntax_is_refused_without_a_shell(command):
    with pytest.raises(GuardRefused):
        parse_command(command, allow_shell=False)


def test_quoted_text_is_only_text():
    parsed = parse_command("grep -n 'a;b $(x) `y`' src/a.py", allow_shell=False)
    assert parsed.argv == ["grep", "-n", "a;b $(x) `y`", "src/a.py"]
    assert parsed.shell is False


@pytest.mark.parametrize(
    ("argv", "risky"),
    [
        (["ls", "-la"], False),
        (["pytest", "-q"], False),
        (["git", "status"], False),
        (["git", "push", "origin", "main"], True),
        (["git", "checkout", "main"], True),
        (["git", "-c", "core.pager=sh", "log"], True),
        (["curl", "http://example.com"], True),
        (["wget", "x"], True),
        (["ssh", "host"], True),
        (["nc", "-l", "1"], True),
        (["rm", "a.py"], True),
        (["find", ".", "-delete"], True),
        (["bash", "-c", "ls"], True),
        (["env", "X=1", "ls"], True),
        (["sudo", "ls"], True),
        (["/bin/ls"], True),
        (["make"], True),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else str(v),
)
def test_command_risk(argv, risky):
    assert classify_command(argv)[0] is risky


def test_allowlist_entries_make_commands_safe():
    assert classify_command(["make", "build"], allowlist=["make"]) == (False, "")
    assert classify_command(["git", "push"], allowlist=["git push"]) == (False, "")
    assert classify_command(["git", "push"], allowlist=["git status"])[0] is True


def test_policy_applies_the_autonomy_mode(root):
    semi = Policy(root=root, autonomy_mode="semi_auto")
    full = Policy(root=root, autonomy_mode="full_auto")
    assert semi.authorize("run_terminal", {"command": "curl x"}).action == "ask"
    assert full.authorize("run_terminal", {"command": "curl x"}).action == "deny"
    assert semi.authorize("run_terminal", {"command": "ls; id"}).action == "deny"
    assert semi.authorize("write_file", {"path": "../x"}).action == "deny"
    assert semi.authorize("Write", {"file_path": str(root / "src" / "b.py")}).action == "allow"
    assert semi.authorize("Bash", {"command": "pytest -q"}).action == "allow"
    assert semi.authorize("WebFetch", {"url": "http://x"}).action == "ask"
    scoped = Policy(root=root, autonomy_mode="semi_auto", write_scope=("src/*",))
    assert scoped.authorize("write_file", {"path": "src/b.py"}).action == "allow"
    assert scoped.authorize("write_file", {"path": "README.md"}).action == "ask"


def test_execute_scrubs_the_environment_and_caps_output(root, tmp_path, monkeypatch):
    # given a secret in this process's environment (the worker's)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    home = tmp_path / "home"
    home.mkdir()
    parsed = parse_command(
        ["python3", "-c", "import os; print(sorted(os.environ)); print('x' * 50000)"], allow_shell=False
    )

    # when a command runs through the guard
    result = execute(
        parsed, cwd=root, home=home, writable=[root, home], artifact_dir=tmp_path / "art", output_cap=1000
    )

    # then it saw only the scrubbed variables, and its output was capped with the full text kept
    assert result.exit_code == 0
    assert "AWS_SECRET_ACCESS_KEY" not in result.output and "'HOME'" in result.output
    assert result.truncated and len(result.output) < 1200
    assert len(Path(result.artifact_path).read_text()) > 50000


def test_execute_times_out_and_kills_the_group(root, tmp_path):
    parsed = parse_command(["python3", "-c", "import time; time.sleep(30)"], allow_shell=False)
    result = execute(parsed, cwd=root, home=tmp_path, writable=[root], timeout=0.5)
    assert result.timed_out and result.exit_code is None


def test_sandbox_keeps_writes_inside_and_the_network_off(root, tmp_path):
    import shutil

    if not shutil.which("bwrap"):
        pytest.skip("bubblewrap (bwrap) is not installed on this machine")
    outside = tmp_path / "outside-dir"
    outside.mkdir()
    code = (
        "import socket, pathlib\n"
        f"pathlib.Path('inside.txt').write_text('ok')\n"
        "try:\n"
        f"    pathlib.Path('{outside}/x').write_text('no')\n"
        "    print('WROTE-OUTSIDE')\n"
        "except OSError as e:\n"
        "    print('write refused', e.errno)\n"
        "try:\n"
        "    socket.create_connection(('1.1.1.1', 80), timeout=2); print('NETWORK')\n"
        "except OSError as e:\n"
        "    print('network refused')\n"
    )
    result = execute(
        parse_command(["python3", "-c", code], allow_shell=False), cwd=root, home=tmp_path, writable=[root]
    )
    assert result.sandbox.startswith("bwrap")
    assert "write refused" in result.output and "network refused" in result.output, result.output
    assert (root / "inside.txt").read_text() == "ok"
    assert not (outside / "x").exists()
