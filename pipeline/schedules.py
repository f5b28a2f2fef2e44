"""Recurring runs of a compiled pipeline spec on Kubeflow Pipelines or Vertex AI Pipelines.

`mgebm compile` writes the spec (a PipelineJob JSON: `pipelineSpec` + `runtimeConfig`); the
functions here build the request that schedules it, offline, and submit it:

- Kubeflow Pipelines (KFP SDK): a `kfp_server_api.V2beta1RecurringRun` with a cron trigger, sent
  by `RecurringRunServiceApi.create_recurring_run` (what `kfp.Client.create_recurring_run` sends);
- Vertex AI: an `aiplatform_v1.Schedule` wrapping a `CreatePipelineJobRequest`, sent by
  `ScheduleServiceClient.create_schedule`.

Both allow one run at a time and no catch-up of missed runs: a nightly retraining that is still
going when the next night comes is not doubled, and the work folder lock
(`pipeline/workdir_lock.py`) does the same for cron on one machine. Cron expressions take the
standard 5 fields (minute hour day month weekday, e.g. `0 2 * * *`); KFP's 6-field form (with
seconds first) is derived from it.
"""

from __future__ import annotations

import json

from pipeline.checks import ScheduleError, check_cron, require_vertex_place

ENGINES = ("kubeflow", "vertex")


def load_spec(spec_path: str) -> dict:
    """The PipelineJob JSON written by `mgebm compile`; ScheduleError naming the file otherwise."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel (gfile: local or gs://)

    try:
        with tf.io.gfile.GFile(spec_path) as f:
            job = json.load(f)
    except (OSError, ValueError, tf.errors.OpError) as err:
        raise ScheduleError(f"--spec {spec_path}: not a readable JSON pipeline spec ({err}); write one "
                            "with `mgebm compile --preset NAME --output SPEC.json`") from None
    if not isinstance(job, dict) or "pipelineSpec" not in job:
        raise ScheduleError(f"--spec {spec_path} has no pipelineSpec; give the file `mgebm compile` wrote")
    return job


def kfp_recurring_run(job: dict, cron: str, name: str, experiment_id: str):
    """A KFP v2 recurring run of the compiled spec `job`, every `cron` (5 fields)."""
    import kfp_server_api  # pylint: disable=import-outside-toplevel

    runtime = job.get("runtimeConfig") or {}
    return kfp_server_api.V2beta1RecurringRun(
        display_name=name, experiment_id=experiment_id,
        mode=kfp_server_api.RecurringRunMode.ENABLE,
        pipeline_spec=job["pipelineSpec"],
        runtime_config=kfp_server_api.V2beta1RuntimeConfig(
            pipeline_root=runtime.get("gcsOutputDirectory"),
            parameters=runtime.get("parameterValues") or None),
        trigger=kfp_server_api.V2beta1Trigger(
            cron_schedule=kfp_server_api.V2beta1CronSchedule(cron="0 " + check_cron(cron))),
        max_concurrency="1", no_catchup=True)


def vertex_schedule(job: dict, cron: str, name: str, project: str, location: str,
                    service_account: str = "", time_zone: str = "UTC"):
    """A Vertex AI schedule that creates a PipelineJob of the compiled spec `job` every `cron`."""
    from google.cloud import aiplatform_v1  # pylint: disable=import-outside-toplevel

    require_vertex_place(project, location)
    parent = f"projects/{project}/locations/{location}"
    pipeline_job = aiplatform_v1.PipelineJob(display_name=name, service_account=service_account)
    # The JSON spec as written by the compiler, parsed into the API's own message types.
    aiplatform_v1.PipelineJob.pb(pipeline_job).MergeFrom(
        aiplatform_v1.PipelineJob.pb(aiplatform_v1.PipelineJob.from_json(
            json.dumps({"pipelineSpec": job["pipelineSpec"],
                        "runtimeConfig": job.get("runtimeConfig") or {}}))))
    return aiplatform_v1.Schedule(
        display_name=name, cron=f"TZ={time_zone} {check_cron(cron)}",
        create_pipeline_job_request=aiplatform_v1.CreatePipelineJobRequest(
            parent=parent, pipeline_job=pipeline_job),
        max_concurrent_run_count=1, allow_queueing=False, catch_up=False)


def to_json(request) -> str:
    """The request as JSON, as the engine's API receives it (for --dry-run and review)."""
    if hasattr(type(request), "to_json"):  # proto-plus (Vertex)
        return type(request).to_json(request, indent=2)
    import kfp_server_api  # pylint: disable=import-outside-toplevel

    return json.dumps(kfp_server_api.ApiClient().sanitize_for_serialization(request), indent=2,
                      sort_keys=True)


def submit_kfp(request, host: str):
    """Create the recurring run on the KFP server at `host` (needs a reachable cluster)."""
    import kfp  # pylint: disable=import-outside-toplevel

    client = kfp.Client(host=host)
    return client._recurring_run_api.create_recurring_run(body=request)  # noqa: SLF001 -- what
    # kfp.Client.create_recurring_run sends, without re-reading the spec file


def submit_vertex(request, location: str):
    """Create the schedule on Vertex AI (needs Google Cloud credentials)."""
    from google.cloud import aiplatform_v1  # pylint: disable=import-outside-toplevel

    client = aiplatform_v1.ScheduleServiceClient(
        client_options={"api_endpoint": f"{location}-aiplatform.googleapis.com"})
    return client.create_schedule(parent=request.create_pipeline_job_request.parent,
                                  schedule=request)
