"""factory_boy factories shared by every test."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import factory
from django.conf import settings
from django.contrib.auth import get_user_model

from autopilot.manager.models import Proposal
from autopilot.models import Project, ProjectMembership, Role
from blueprints.models import Blueprint, BlueprintText, IngestionJob, PlanNode, Task, TaskDependency
from runs.models import ExecutionRun, ExecutionStep, Integration, RunMessage, UsageRecord
from tests.gitrepo import make_repo


def repo_root_for_tests() -> Path:
    """Where factory repositories live: beside the data directory, never inside it (the trust model
    refuses a repository inside the data directory)."""
    data_dir = Path(settings.DATA_DIR)
    return data_dir.parent / f"{data_dir.name}-test-repos"


def _new_repo() -> str:
    root = repo_root_for_tests()
    root.mkdir(parents=True, exist_ok=True)
    return str(make_repo(Path(tempfile.mkdtemp(dir=root))))


def grant_register(user):
    """Give `user` the site-level right to register repositories (autopilot.register_repository)."""
    from django.contrib.auth.models import Permission

    user.user_permissions.add(
        Permission.objects.get(codename="register_repository", content_type__app_label="autopilot")
    )
    return get_user_model().objects.get(pk=user.pk)  # a fresh object: the permission cache is per instance


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", "pw-for-tests-123")

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    name = factory.Sequence(lambda n: f"Project {n}")
    slug = factory.Sequence(lambda n: f"project-{n}")
    repo_path = factory.LazyFunction(_new_repo)
    base_branch = "main"


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ProjectMembership

    project = factory.SubFactory(ProjectFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.OPERATOR


class BlueprintFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Blueprint
        skip_postgeneration_save = True

    project = factory.SubFactory(ProjectFactory)
    title = "Spec"
    version = factory.Sequence(lambda n: n + 1)
    content_hash = factory.LazyAttribute(lambda b: hashlib.sha256(b.source_text.encode()).hexdigest())
    text = factory.RelatedFactory(
        "tests.factories.BlueprintTextFactory",
        factory_related_name="blueprint",
        text=factory.SelfAttribute("..source_text"),
    )

    class Params:
        source_text = "# Phase 1\n\nDo things.\n"


class BlueprintTextFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BlueprintText


class IngestionJobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = IngestionJob

    blueprint = factory.SubFactory(BlueprintFactory)
    project = factory.SelfAttribute("blueprint.project")


class PlanNodeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PlanNode

    blueprint = factory.SubFactory(BlueprintFactory)
    project = factory.SelfAttribute("blueprint.project")
    kind = PlanNode.Kind.PHASE
    level = 1
    title = factory.Sequence(lambda n: f"Section {n}")
    anchor = factory.Sequence(lambda n: f"section-{n}")
    order = factory.Sequence(lambda n: n)
    start = 0
    end = 10
    content_hash = "0" * 64


class TaskFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Task

    project = factory.SubFactory(ProjectFactory)
    title = factory.Sequence(lambda n: f"Task {n}")


class TaskDependencyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TaskDependency

    task = factory.SubFactory(TaskFactory)
    depends_on = factory.SubFactory(TaskFactory, project=factory.SelfAttribute("..task.project"))


class ProposalFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Proposal

    task = factory.SubFactory(TaskFactory)
    project = factory.SelfAttribute("task.project")


class ExecutionRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ExecutionRun

    project = factory.SubFactory(ProjectFactory)
    agent_backend = "scripted"
    model = "scripted"
    prompt = "Do the thing"


class IntegrationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Integration

    project = factory.SubFactory(ProjectFactory)
    task = factory.SubFactory(TaskFactory, project=factory.SelfAttribute("..project"))
    branch = factory.Sequence(lambda n: f"autopilot/task-{n}")
    target_branch = "autopilot/integration"


class ExecutionStepFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ExecutionStep

    run = factory.SubFactory(ExecutionRunFactory)
    seq = factory.Sequence(lambda n: n + 1)
    kind = ExecutionStep.Kind.READ_FILE


class RunMessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RunMessage

    run = factory.SubFactory(ExecutionRunFactory)
    body = "Please also add tests."


class UsageRecordFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = UsageRecord

    run = factory.SubFactory(ExecutionRunFactory)
    project = factory.SelfAttribute("run.project")
    model = "claude-sonnet-4-5"
    input_tokens = 100
    output_tokens = 50
