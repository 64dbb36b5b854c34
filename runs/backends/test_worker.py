"""`test_worker`: runs the project's test command in the run's worktree — real work, no model.

The command is the project owner's (changing it needs a trusted role), so it runs with `/bin/sh -c`
whatever project.allow_shell says, but in the same sandbox as agent commands (the worktree and the
run's HOME writable, system directories read-only, a private /tmp, no network, nothing of the data
directory), with the scrubbed environment, timeout and output cap; without bubblewrap the step's
`sandbox` says "unsandboxed". The step records the exit code and the pass/fail counts parsed from pytest
or unittest summaries, plus the failing test ids pytest prints.
"""

from __future__ import annotations

import re

from django.conf import settings

from runs import workspace
from runs.backends.base import Backend, BackendError, BackendResult, RunContext
from runs.models import ExecutionStep

PYTEST_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected|warnings?)")
PYTEST_SUMMARY = re.compile(
    r"^(?:=+ )?(?:\d+ \w+(?:, )?)+.* in [\d.]+s(?: \([^)]*\))?(?: =+)?\s*$|^=+ no tests ran.*$", re.M
)
UNITTEST_RAN = re.compile(r"^Ran (\d+) tests? in [\d.]+s", re.M)
UNITTEST_RESULT = re.compile(r"^(OK|FAILED)(?: \((.*)\))?\s*$", re.M)
PYTEST_FAILED_ID = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.M)


def parse_test_output(output: str) -> dict:
    """{passed, failed, errors, skipped, total, failing: [...], framework} from pytest/unittest output."""
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    framework = ""
    summaries = PYTEST_SUMMARY.findall(output)
    if summaries:
        framework = "pytest"
        for number, word in PYTEST_COUNT.findall(summaries[-1]):
            key = {
                "error": "errors",
                "errors": "errors",
                "xfailed": "skipped",
                "deselected": None,
                "warning": None,
                "warnings": None,
                "xpassed": "passed",
            }.get(word, word)
            if key:
                counts[key] += int(number)
    else:
        ran = UNITTEST_RAN.findall(output)
        result = UNITTEST_RESULT.findall(output)
        if ran:
            framework = "unittest"
            total = int(ran[-1])
            detail = result[-1][1] if result else ""
            for part in filter(None, (p.strip() for p in detail.split(","))):
                key, _, value = part.partition("=")
                if value.isdigit():
                    mapped = {"failures": "failed", "errors": "errors", "skipped": "skipped"}.get(key)
                    if mapped:
                        counts[mapped] += int(value)
            counts["passed"] = max(0, total - counts["failed"] - counts["errors"] - counts["skipped"])
    counts["total"] = counts["passed"] + counts["failed"] + counts["errors"] + counts["skipped"]
    counts["failing"] = PYTEST_FAILED_ID.findall(output)[:50]
    counts["framework"] = framework
    return counts


class TestWorkerBackend(Backend):
    name = "test_worker"
    label = "test worker (no model)"
    __test__ = False  # not a pytest class

    def run(self, ctx: RunContext) -> BackendResult:
        command = (ctx.run.project.test_command or "").strip()
        if not command:
            raise BackendError("The project has no test command.")
        handle = ctx.begin_step(ExecutionStep.Kind.TEST, tool_name="test_command", input={"command": command})
        ctx.count_turn()
        timeout = float(getattr(settings, "AUTOPILOT_TEST_TIMEOUT", 1800))
        # The owner's command, with a shell, in the run's sandbox (no network); see workspace.run_script.
        result = workspace.run_script(
            command,
            cwd=ctx.cwd,
            workspace=ctx.workspace,
            home=ctx.home,
            timeout=timeout,
            artifact_dir=ctx.artifacts_dir,
            redact=getattr(ctx, "redactor", None),
            on_start=ctx.register_process,
            on_exit=ctx.unregister_process,
        )
        counts = parse_test_output(result.output)
        summary = (
            f"{counts['passed']} passed, {counts['failed']} failed, "
            f"{counts['errors']} errors, {counts['skipped']} skipped"
            if counts["framework"]
            else f"exit code {result.exit_code}"
        )
        extra = {"exit_code": result.exit_code, "sandbox": result.sandbox, "counts": counts}
        text = f"{summary}\n\n{result.output}"
        if result.ok:
            handle.complete(text, extra_input=extra, artifact_path=result.artifact_path)
            return BackendResult(summary=f"tests passed: {summary}")
        handle.fail(text, extra_input=extra, artifact_path=result.artifact_path)
        if result.timed_out:
            return BackendResult(succeeded=False, error=f"tests timed out after {timeout:g}s")
        return BackendResult(succeeded=False, error=f"tests failed: {summary}")
