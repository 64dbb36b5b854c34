"""`autopilot manager plan|metrics|refine|proposals PROJECT [--json]`."""

from __future__ import annotations

from autopilot.cli_support import AutopilotCommand
from autopilot.errors import NotFound
from autopilot.manager import explain, metrics, proposals
from autopilot.manager.models import Proposal
from autopilot.models import Role
from autopilot.permissions import require_role
from autopilot.services import project_get


class Command(AutopilotCommand):
    help = "The manager: what the next tick would start and why (plan), learning metrics, refine, proposals."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True, metavar="{plan,metrics,refine,proposals}")

        def add(name: str, text: str):
            return self.add_action(sub, name, text)

        for name, text in (
            ("plan", "What the next tick would start, and why not for the rest."),
            ("metrics", "Learning metrics."),
            ("refine", "Re-rank learned priorities from the learned signals."),
        ):
            add(name, text).add_argument("project")
        p = add("proposals", "List proposals, or accept/dismiss one.")
        p.add_argument("project")
        p.add_argument("--status", choices=[s.value for s in Proposal.Status])
        group = p.add_mutually_exclusive_group()
        group.add_argument("--accept", type=int, metavar="ID")
        group.add_argument("--dismiss", type=int, metavar="ID")

    def handle(self, *args, **options):
        actor = self.actor(options)
        project = project_get(options["project"])
        action = options["action"]
        writing = action == "refine" or (
            action == "proposals" and (options.get("accept") or options.get("dismiss"))
        )
        if actor is not None:
            require_role(actor, project, Role.OPERATOR if writing else Role.VIEWER)
        if action == "plan":
            data = explain.manager_plan(project)
            lines = [
                f"{project.name}: mode {data['mode']}{' (paused)' if data['paused'] else ''}; "
                f"slots {data['capacity']['project_slots']} project / "
                f"{data['capacity']['global_slots']} global"
            ]
            for row in data["would_start"]:
                lines.append(
                    f"  {row['action'].upper():8} #{row['task']} {row['title']}: {'; '.join(row['reasons'])}"
                )
            for row in data["not_started"]:
                lines.append(f"  skip     #{row['task']} {row['title']}: {'; '.join(row['reasons'])}")
            self.emit(data, "\n".join(lines))
        elif action == "metrics":
            data = metrics.learning_metrics(project)
            self.emit(data)
        elif action == "refine":
            data = metrics.refine_plan(project=project, actor=actor)
            self.emit(data, f"{data['changed']} of {data['examined']} task(s) re-ranked ({data['formula']})")
        else:
            self._proposals(project, actor, options)

    def _proposals(self, project, actor, options):
        target = options.get("accept") or options.get("dismiss")
        if target:
            proposal = Proposal.objects.filter(pk=target, project=project).first()
            if proposal is None:
                raise NotFound(f"No proposal #{target} in project '{project.name}'.")
            if options.get("accept"):
                run = proposals.proposal_accept(proposal=proposal, actor=actor)
                self.emit(
                    {"proposal": proposal.pk, "status": "accepted", "run": run.pk},
                    f"proposal #{proposal.pk} accepted: run #{run.pk} queued",
                )
            else:
                proposals.proposal_dismiss(proposal=proposal, actor=actor)
                self.emit(
                    {"proposal": proposal.pk, "status": "dismissed"}, f"proposal #{proposal.pk} dismissed"
                )
            return
        rows = [
            {
                "id": p.pk,
                "task": p.task_id,
                "title": p.task.title,
                "status": p.status,
                "reason": p.reason,
                "run": p.run_id,
                "created_at": p.created_at,
            }
            for p in proposals.proposals_for(project, status=options.get("status"))[:500]
        ]
        self.emit(
            {"proposals": rows},
            "\n".join(
                f"#{r['id']} [{r['status']}] task {r['task']} {r['title']}: {r['reason']}" for r in rows
            )
            or "no proposals",
        )
