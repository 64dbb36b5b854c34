"""`autopilot compare A B`: two runs side by side (metrics and aligned steps)."""

from __future__ import annotations

from runs import trajectory
from runs.management.commands._runcli import RunCliCommand, load_source

MARK = {"same": " ", "changed": "~", "only_a": "<", "only_b": ">"}


def compare_text(c: dict) -> str:
    a, b, d = c["a"], c["b"], c["delta"]

    def fmt(v):
        if v is None:
            return "-"
        return f"{v:.4f}" if not isinstance(v, int) else str(v)

    rows = [
        ("backend", a["backend_label"], b["backend_label"], ""),
        ("model", a["model"] or "-", b["model"] or "-", ""),
        ("status", a["status"], b["status"], ""),
        ("cost $", fmt(a["cost_usd"]), fmt(b["cost_usd"]), fmt(d["cost_usd"])),
        ("tokens", str(a["tokens"]["total"]), str(b["tokens"]["total"]), str(d["tokens"])),
        ("turns", str(a["turns"]), str(b["turns"]), str(d["turns"])),
        ("steps", str(a["steps"]), str(b["steps"]), str(d["steps"])),
        ("duration s", fmt(a["duration_seconds"]), fmt(b["duration_seconds"]), fmt(d["duration_seconds"])),
        (
            "first step s",
            fmt(a["time_to_first_step_seconds"]),
            fmt(b["time_to_first_step_seconds"]),
            fmt(d["time_to_first_step_seconds"]),
        ),
    ]
    lines = [f"{'':<14}{'run #' + str(a['run']):<28}{'run #' + str(b['run']):<28}delta"]
    lines += [f"{name:<14}{va:<28}{vb:<28}{dv}" for name, va, vb, dv in rows]
    files = c["files"]
    lines.append(
        f"files: both {files['both'] or '-'}; only A {files['only_a'] or '-'}; "
        f"only B {files['only_b'] or '-'}"
    )
    lines.append(f"step similarity {c['similarity']:.0%}")
    for row in c["steps"]:
        left = row["a"]["summary"] if row["a"] else ""
        right = row["b"]["summary"] if row["b"] else ""
        lines.append(f"{MARK[row['match']]} {left[:60]:<60} | {right[:60]}")
    return "\n".join(lines)


class Command(RunCliCommand):
    help = (
        "Compare two runs (trajectory files or run ids) side by side: cost, tokens, turns, duration, "
        "files, and their steps aligned."
    )

    def add_arguments(self, parser):
        parser.add_argument("a", metavar="A", help="A trajectory .json file or a run id.")
        parser.add_argument("b", metavar="B", help="A trajectory .json file or a run id.")

    def handle(self, *args, **options):
        _, data_a = load_source(self, options["a"], options)
        _, data_b = load_source(self, options["b"], options)
        result = trajectory.compare(data_a, data_b)
        self.emit(result, compare_text(result))
