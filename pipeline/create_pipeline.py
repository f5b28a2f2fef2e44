"""`create_pipeline(config, ...)`: the one TFX pipeline of multigrid-ebm.

    IngestImages -> BuildPyramid -> Train ---------------------> Evaluate -> PushModel
             \\-> TrainDomainClassifier (labelled data only) -/

The components are family-neutral: `Train` builds whatever `model.family` names (through the
registry `trainers.families`) and `Evaluate` runs the experiments the export's signatures allow.

The same pipeline object runs under LocalDagRunner (SQLite metadata) and compiles for Kubeflow.
"""

from __future__ import annotations

import os

from trainers.config import Config


def pipeline_name(config: Config) -> str:
    """Kubeflow-safe name: letters, digits and hyphens (no underscores or colons)."""
    return "mgebm-" + config.name.replace(":", "-").replace("_", "-").lower()


def create_pipeline(config: Config, pipeline_root: str, metadata_path: str | None,
                    serving_root: str, state_root: str, enable_cache: bool = True):
    """Build the TFX pipeline.

    Args:
      config: the validated run config (travels to every component as JSON).
      pipeline_root: where TFX stores artifacts (a local folder or gs://...).
      metadata_path: SQLite file for ML Metadata; None when the orchestrator provides it
        (Kubeflow).
      serving_root: the Pusher's TF Serving root (`<serving_root>/<model_name>/<version>/`).
      state_root: stable folder for training state (checkpoints, TensorBoard logs) that survives
        pipeline reruns, so an interrupted training resumes instead of restarting.
      enable_cache: reuse results of components whose inputs did not change.
    """
    from tfx.orchestration import metadata, pipeline

    from components.classifier_component import TrainDomainClassifier
    from components.evaluator_component import Evaluate
    from components.ingest_component import IngestImages
    from components.pusher_component import PushModel
    from components.pyramid_component import BuildPyramid
    from components.trainer_component import Train

    ingest = IngestImages(config_json=stage_config_json(config, ()))
    pyramid = BuildPyramid(config_json=stage_config_json(config, ()),
                           images=ingest.outputs["images"])
    trainer = Train(
        config_json=stage_config_json(config, ("model", "sampler", "train", "export")),
        pyramid=pyramid.outputs["pyramid"], state_root=state_root, serving_root=serving_root)
    classifier = TrainDomainClassifier(config_json=stage_config_json(config, ("eval", "train")),
                                       images=ingest.outputs["images"])
    evaluator = Evaluate(
        config_json=stage_config_json(config, ("eval", "train", "export")),
        model=trainer.outputs["model"], model_run=trainer.outputs["model_run"],
        images=ingest.outputs["images"], classifier=classifier.outputs["classifier"],
        serving_root=serving_root)
    pusher = PushModel(config_json=stage_config_json(config, ("export",)),
                       model=trainer.outputs["model"],
                       blessing=evaluator.outputs["blessing"], serving_root=serving_root)
    components = [ingest, pyramid, trainer, classifier, evaluator, pusher]
    connection = (metadata.sqlite_metadata_connection_config(metadata_path)
                  if metadata_path else None)
    return pipeline.Pipeline(
        pipeline_name=pipeline_name(config), pipeline_root=pipeline_root,
        components=components, enable_cache=enable_cache,
        metadata_connection_config=connection)


def stage_config_json(config: Config, sections: tuple[str, ...]) -> str:
    """The config a stage sees: `data`, `pyramid` and `sections`; every other section at its
    defaults. TFX caches on a component's parameters, so changing, e.g., an evaluation threshold
    re-runs only the stages that read `eval`, never ingest, pyramid or training."""
    keep = {"name", "data", "pyramid", *sections}
    defaults = Config().to_dict()
    chosen = {k: (v if k in keep else defaults[k]) for k, v in config.to_dict().items()}
    return Config.from_dict(chosen).to_json()


def local_paths(workdir: str) -> dict[str, str]:
    """The folders of a local run under WORKDIR."""
    workdir = os.path.abspath(workdir) if "://" not in workdir else workdir
    return {
        "workdir": workdir,
        "pipeline_root": os.path.join(workdir, "tfx"),
        "metadata_path": os.path.join(workdir, "metadata.sqlite"),
        "serving_root": os.path.join(workdir, "serving"),
        "state_root": os.path.join(workdir, "train_state"),
    }
