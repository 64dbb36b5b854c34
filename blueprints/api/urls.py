from django.urls import path
from rest_framework.routers import SimpleRouter

from blueprints.api import blueprints as blueprint_api
from blueprints.api import search as search_api
from blueprints.api import tasks as task_api

router = SimpleRouter(trailing_slash=True)
router.register("tasks", task_api.TaskViewSet, basename="task")
router.register("dependencies", task_api.DependencyViewSet, basename="dependency")
# blueprints ("ingest")
router.register("blueprints", blueprint_api.BlueprintViewSet, basename="blueprint")
router.register("plan_nodes", blueprint_api.PlanNodeViewSet, basename="plannode")
router.register("ingestion_jobs", blueprint_api.IngestionJobViewSet, basename="ingestionjob")
router.register("summary_jobs", search_api.SummaryJobViewSet, basename="summaryjob")

urlpatterns = [
    # blueprints ("ingest")
    path(
        "projects/<int:project_id>/blueprints/", blueprint_api.project_blueprints, name="project-blueprints"
    ),
    path(
        "projects/<int:project_id>/ingestion_jobs/",
        blueprint_api.ProjectIngestionJobsView.as_view(),
        name="project-ingestion-jobs",
    ),
    path(
        "projects/<int:project_id>/ingestion_jobs/<int:job_id>/",
        blueprint_api.project_ingestion_job,
        name="project-ingestion-job",
    ),
    path("projects/<int:project_id>/search/", search_api.project_search, name="project-search"),
    path("projects/<int:project_id>/summaries/", search_api.project_summaries, name="project-summaries"),
    # tasks ("graph")
    path("projects/<int:project_id>/tasks/ready/", task_api.project_ready_tasks, name="project-tasks-ready"),
    path("projects/<int:project_id>/tasks/next/", task_api.project_next_task, name="project-tasks-next"),
    path(
        "plan_nodes/<int:node_id>/generate_tasks/",
        task_api.plan_node_generate_tasks,
        name="plannode-generate-tasks",
    ),
    path(
        "blueprints/<int:blueprint_id>/generate_all_tasks/",
        task_api.blueprint_generate_all_tasks,
        name="blueprint-generate-all-tasks",
    ),
    *router.urls,
]
