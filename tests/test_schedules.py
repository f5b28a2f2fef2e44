"""Recurring runs on Kubeflow Pipelines and Vertex AI: the requests, built offline from a real spec.

Sending them needs a cluster or Google Cloud credentials, which this machine does not have; the
requests are checked by parsing them back into the engines' own API types.
"""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("tfx", reason="compiling a spec needs TFX (primary environment)")
pytest.importorskip("kfp_server_api", reason="the KFP SDK comes with TFX's Kubeflow extra")
pytestmark = pytest.mark.tfx


def _cli(*args, **env):
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, PYTHONUNBUFFERED="1", **env))


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "pipeline.json"
    result = _cli("compile", "--preset", "mnist5k-multigrid", "--output", str(path),
                  "--pipeline-root", "gs://bucket/mgebm")
    assert result.returncode == 0, result.stderr[-3000:]
    return str(path)


@pytest.mark.slow
def test_kfp_recurring_run_request(spec):
    import kfp_server_api

    result = _cli("schedule", "--engine", "kubeflow", "--spec", spec, "--cron", "0 2 * * *",
                  "--name", "nightly", "--experiment-id", "exp-7", "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    body = json.loads(result.stdout)
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 2 * * *"}}  # KFP: seconds first
    assert body["mode"] == "ENABLE" and body["no_catchup"] is True and body["max_concurrency"] == "1"
    assert body["experiment_id"] == "exp-7" and body["runtime_config"]["pipeline_root"] == "gs://bucket/mgebm"
    with open(spec) as f:
        assert body["pipeline_spec"] == json.load(f)["pipelineSpec"]
    # the body is a valid request of the KFP v2beta1 API
    run = kfp_server_api.ApiClient()._ApiClient__deserialize(body, "V2beta1RecurringRun")
    assert run.trigger.cron_schedule.cron == "0 0 2 * * *" and run.display_name == "nightly"


@pytest.mark.slow
def test_vertex_schedule_request(spec):
    from google.cloud import aiplatform_v1

    result = _cli("schedule", "--engine", "vertex", "--spec", spec, "--cron", "30 1 * * 1-5",
                  "--name", "weekdays", "--project", "proj", "--location", "europe-west4",
                  "--time-zone", "Europe/Amsterdam", "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    schedule = aiplatform_v1.Schedule.from_json(result.stdout)
    assert schedule.cron == "TZ=Europe/Amsterdam 30 1 * * 1-5" and schedule.display_name == "weekdays"
    assert schedule.max_concurrent_run_count == 1 and not schedule.allow_queueing and not schedule.catch_up
    request = schedule.create_pipeline_job_request
    assert request.parent == "projects/proj/locations/europe-west4"
    assert request.pipeline_job.runtime_config.gcs_output_directory == "gs://bucket/mgebm"
    tasks = request.pipeline_job.pipeline_spec["root"]["dag"]["tasks"]
    assert {"IngestImages", "Train", "Evaluate", "PushModel"} <= set(tasks)


def test_bad_schedule_arguments_exit_2_with_one_line(tmp_path):
    spec = str(tmp_path / "pipeline.json")  # checked before it is read: any file will do
    with open(spec, "w") as f:
        f.write('{"pipelineSpec": {}}')
    cases = [
        (("--engine", "kubeflow", "--spec", spec, "--cron", "0 2 * *", "--dry-run"), "--cron '0 2 * *' must have 5"),
        (("--engine", "kubeflow", "--spec", spec, "--cron", "@daily", "--dry-run"), "must have 5 fields"),
        (("--engine", "vertex", "--spec", spec, "--cron", "0 2 * * *", "--dry-run"), "--project and --location"),
        (("--engine", "kubeflow", "--spec", spec, "--cron", "0 2 * * *"), "--host is required"),
        (("--engine", "kubeflow", "--spec", str(tmp_path / "absent.json"), "--cron", "0 2 * * *"),
         "not a readable JSON pipeline spec"),
    ]
    # Answered before TensorFlow or an engine's SDK loads (their imports take half a minute here):
    # with a `tensorflow` that cannot be imported first on the path, the answers are the same.
    blocked = tmp_path / "no_tensorflow" / "tensorflow"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('tensorflow was imported')\n")
    for args, message in cases:
        result = _cli("schedule", *args, PYTHONPATH=str(blocked.parent))
        assert result.returncode == 2, (args, result.stderr[-2000:])
        assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr[-2000:]
    # A file that is there but no spec is read (through gfile, local or gs://) and refused by name.
    from pipeline import schedules

    (tmp_path / "broken.json").write_text("{")
    (tmp_path / "other.json").write_text('{"displayName": "x"}')
    with pytest.raises(schedules.ScheduleError, match="broken.json: not a readable JSON pipeline spec"):
        schedules.load_spec(str(tmp_path / "broken.json"))
    with pytest.raises(schedules.ScheduleError, match="other.json has no pipelineSpec"):
        schedules.load_spec(str(tmp_path / "other.json"))
