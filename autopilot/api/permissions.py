from rest_framework.permissions import SAFE_METHODS, IsAuthenticated

from autopilot.models import Role
from autopilot.permissions import require_role


class ProjectRolePermission(IsAuthenticated):
    """Object permission: viewers read, operators act. Objects expose `project` or are a Project.

    It is also IsAuthenticated: a view that lists only this class (replacing the default
    permissions) must not answer anonymous requests (it answered 200 with an empty list)."""

    write_role = Role.OPERATOR

    def has_object_permission(self, request, view, obj):
        project = obj if obj._meta.model_name == "project" else obj.project
        minimum = (
            Role.VIEWER if request.method in SAFE_METHODS else getattr(view, "write_role", self.write_role)
        )
        # Raises NotFound for non-members (404) and PermissionDenied naming the role needed (403).
        require_role(request.user, project, minimum)
        return True
