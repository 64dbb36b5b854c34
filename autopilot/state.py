"""One place for status transitions.

Each stateful model declares `Status` (TextChoices) and `TRANSITIONS`, a map from a status to the set
of statuses it may move to. `transition()` locks the row, re-reads the status under the lock, checks the
map, saves the new status with any extra field changes, records an Event and schedules the event's
push for after commit. Every service that changes a status calls it.

After-hooks: the app that owns a model registers `after_transition(Model, fn)` in its ready();
`fn(obj, old, new)` runs inside the transition's transaction, after the save (e.g. blueprints keeps
the readiness bookkeeping of tasks true). A hook that raises rolls the transition back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from django.db import models, transaction
from django.utils import timezone

from autopilot.errors import InvalidTransition
from autopilot.events import record_event

M = TypeVar("M", bound=models.Model)

_after_hooks: dict[type[models.Model], list[Callable[[Any, str, str], None]]] = {}


def after_transition(model: type[models.Model], fn: Callable[[Any, str, str], None]) -> None:
    """Run `fn(obj, old, new)` after every transition of a `model` row, in the same transaction."""
    hooks = _after_hooks.setdefault(model, [])
    if fn not in hooks:
        hooks.append(fn)


def allowed_targets(model: type[models.Model], current: str) -> frozenset[str]:
    transitions: Mapping[str, frozenset[str]] = model.TRANSITIONS  # type: ignore[attr-defined]
    return frozenset(transitions.get(current, ()))


def can_transition(model: type[models.Model], current: str, target: str) -> bool:
    return target in allowed_targets(model, current)


def transition(
    obj: M,
    target: str,
    *,
    actor=None,
    reason: str = "",
    fields: dict[str, Any] | None = None,
    event_data: dict[str, Any] | None = None,
    allow_same: bool = False,
) -> M:
    """Move `obj` to `target` under a row lock; returns the refreshed, saved instance.

    `fields` are extra attribute changes saved in the same UPDATE (e.g. ended_at, status_reason).
    `allow_same` makes a transition to the current status a no-op instead of an error (idempotency
    for duplicate deliveries).
    """
    model = type(obj)
    with transaction.atomic():
        locked = model._default_manager.select_for_update().get(pk=obj.pk)
        current = locked.status
        if current == target and allow_same:
            _copy_state(locked, obj)
            return obj
        if not can_transition(model, current, target):
            raise InvalidTransition(locked, current, target, allowed_targets(model, current))
        locked.status = target
        update_fields = ["status"]
        for name, value in (fields or {}).items():
            setattr(locked, name, value)
            update_fields.append(name)
        if any(f.name == "updated_at" for f in model._meta.fields):
            locked.updated_at = timezone.now()
            update_fields.append("updated_at")
        locked.save(update_fields=sorted(set(update_fields)))
        for hook in _after_hooks.get(model, ()):  # the owning app's bookkeeping, same transaction
            hook(locked, current, target)
        record_event(
            kind=f"{model._meta.model_name}.status",
            subject=locked,
            actor=actor,
            data={"from": current, "to": target, "reason": reason, **(event_data or {})},
        )
    _copy_state(locked, obj)
    return obj


def _copy_state(source: models.Model, dest: models.Model) -> None:
    if source is dest:
        return
    for field in type(source)._meta.concrete_fields:
        setattr(dest, field.attname, getattr(source, field.attname))
