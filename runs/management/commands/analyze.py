"""`autopilot analyze RUN`: cost, tokens, duration, turns, tool use, files touched, errors."""

from __future__ import annotations

from runs import trajectory
from runs.management.commands._runcli import RunCliCommand, load_source


def analysis_text(a: dict) -> str:
    def secs(v):
        return "-" if v is None else f"{v:.2f}s"

    lines = [
        f"run #{a['run']} [{a['backend_label']}] {a['status']}"
        + (f": {a['status_reason']}" if a["status_reason"] else ""),
        f"  model {a['model'] or '-'}   cost ${a['cost_usd']:.4f}   turns {a['turns']}   steps {a['steps']}",
        f"  tokens {a['tokens']['input_tokens']} in / {a['tokens']['output_tokens']} out"
        f" / {a['tokens']['cache_read_tokens']} cache read / {a['tokens']['cache_write_tokens']} cache write",
        f"  duration {secs(a['duration_seconds'])}   "
        f"queued → first step {secs(a['time_to_first_step_seconds'])}",
        "  tool use:",
    ]
    for name, t in a["tool_use"].items():
        extra = ", ".join(f"{t[k]} {k}" for k in ("failed", "skipped", "rolled_back") if t[k])
        lines.append(f"    {name:<16} {t['count']:>4}" + (f"  ({extra})" if extra else ""))
    if a["files_touched"]:
        lines.append("  files touched:")
        lines += [
            f"    {f['path']}  +{f['added']} -{f['removed']}  "
            f"(steps {', '.join(map(str, f['steps'])) or '-'})"
            for f in a["files_touched"]
        ]
    if a["errors"]:
        lines.append("  errors:")
        lines += [f"    #{e['seq']} {e['kind']} {e['status']}: {e['message']}" for e in a["errors"]]
    if a["cost_by_model"]:
        lines.append("  cost by model:")
        lines += [
            f"    {m['model']:<24} {m['calls']:>3} calls  ${m['cost_usd']:.4f}" for m in a["cost_by_model"]
        ]
    return "\n".join(lines)


class Command(RunCliCommand):
    help = (
        "Analyze a run or a trajectory file: cost, tokens, duration, turns, tool-use breakdown, files "
        "touched, errors."
    )

    def add_arguments(self, parser):
        parser.add_argument("source", metavar="FILE|RUN", help="A trajectory .json file or a run id.")

    def handle(self, *args, **options):
        _, data = load_source(self, options["source"], options)
        analysis = trajectory.analyze(data)
        self.emit(analysis, analysis_text(analysis))
