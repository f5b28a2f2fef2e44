"""Runners: TFX LocalDagRunner (SQLite metadata) and the Kubeflow V2 compiler."""

from __future__ import annotations

import json
import os

import tensorflow as tf

from components.source_spec import has_spans
from pipeline.create_pipeline import create_pipeline, local_paths
from trainers.config import Config


def run_local(config: Config, workdir: str) -> dict:
    """Run the whole pipeline locally; returns where the latest outputs are.

    A rerun with unchanged inputs reuses cached component results (TFX caching keyed on inputs
    and parameters); training state lives in WORKDIR/train_state, so an interrupted run resumes.
    """
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    config = resolve_latest_span(config)
    paths = local_paths(workdir)
    tf.io.gfile.makedirs(paths["workdir"])
    pipe = create_pipeline(config, paths["pipeline_root"], paths["metadata_path"],
                           paths["serving_root"], paths["state_root"])
    LocalDagRunner().run(pipe)
    return latest_outputs(paths["metadata_path"], pipe.pipeline_info.pipeline_name)


def resolve_latest_span(config: Config) -> Config:
    """`data.span=latest` -> the latest span's number, fixed for the whole run.

    Every stage then sees the same span, the exported config.json records it, and TFX caching
    (keyed on the stages' parameters) reruns the stages exactly when a new span has arrived.
    Sources without `{SPAN}` and explicit spans are returned unchanged.
    """
    from components.sources import concrete_spans

    if not has_spans(config.data.source) or config.data.span != "latest":
        return config
    span = concrete_spans(config.data.source, "latest")[-1][0]
    print(f"[mgebm] data: span {span} of {config.data.source} (the latest)", flush=True)
    return config.with_overrides([f"data.span={span}"])


def latest_outputs(metadata_path: str, pipeline_name: str) -> dict:
    """Newest artifact URI of each output type of the pipeline, read from ML Metadata."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    cfg = metadata_store_pb2.ConnectionConfig()
    cfg.sqlite.filename_uri = metadata_path
    cfg.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(cfg)
    out = {}
    for key, type_name in [("images", "Examples"), ("pyramid", "components.Pyramid"),
                           ("model", "Model"), ("model_run", "ModelRun"),
                           ("evaluation", "ModelEvaluation"), ("blessing", "ModelBlessing"),
                           ("pushed", "PushedModel")]:
        try:
            arts = store.get_artifacts_by_type(type_name)
        except Exception:  # type not registered: the stage never ran
            arts = []
        if arts:
            newest = max(arts, key=lambda a: a.id)
            props = {k: (v.int_value or v.string_value) for k, v in newest.custom_properties.items()}
            out[key] = {"uri": newest.uri, "properties": props}
    return out


def compile_kubeflow(config: Config, output_file: str, pipeline_root: str, image: str) -> str:
    """Write a Kubeflow Pipelines V2 spec (JSON) offline; returns its path.

    Submit it with the KFP client or Vertex AI Pipelines. Every step runs `image`, which must
    contain this package (e.g. `pip install multigrid-ebm[tfx]`).
    """
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as kfv2

    root = pipeline_root.rstrip("/")
    pipe = create_pipeline(config, pipeline_root=root, metadata_path=None,
                           serving_root=root + "/serving", state_root=root + "/train_state")
    out_dir = os.path.dirname(os.path.abspath(output_file)) if "://" not in output_file else None
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    runner = kfv2.KubeflowV2DagRunner(
        config=kfv2.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=out_dir or os.path.dirname(output_file),
        output_filename=os.path.basename(output_file))
    runner.run(pipe, write_out=True)
    with tf.io.gfile.GFile(output_file) as f:
        spec = json.load(f)  # the spec must be valid JSON
    if has_spans(config.data.source) and config.data.span == "latest":
        # The spec is compiled once and run on a schedule: its ingest must look for the latest
        # span every time it runs, so it is never answered from the cache.
        spec["pipelineSpec"]["root"]["dag"]["tasks"]["IngestImages"]["cachingOptions"] = {
            "enableCache": False}
        with tf.io.gfile.GFile(output_file, "w") as f:
            json.dump(spec, f, indent=2, sort_keys=True)
    return output_file
