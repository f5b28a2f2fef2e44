"""TFX artifact types of multigrid-ebm (what passes between stages).

Standard TFX types where one fits (`Examples` for ingested images, `Model`, `ModelRun`,
`ModelEvaluation`, `ModelBlessing`, `PushedModel`); custom types for the pyramid records and the
domain classifier. A custom type's TYPE_NAME is also its import path: TFX's Kubeflow V2 compiler
writes it as the artifact's schema title (`<namespace>.<Class>`, a pattern it enforces), and
TFX's container entrypoint imports the class from that title when a task reads or writes the
artifact, so `components.Pyramid` must import (the `components` package exposes both classes).
"""

from tfx.types import artifact, standard_artifacts

Examples = standard_artifacts.Examples
Model = standard_artifacts.Model
ModelRun = standard_artifacts.ModelRun
ModelEvaluation = standard_artifacts.ModelEvaluation
ModelBlessing = standard_artifacts.ModelBlessing
PushedModel = standard_artifacts.PushedModel


class Pyramid(artifact.Artifact):
    """Multi-resolution pyramid TFRecords (`train/`, `eval/`) plus `metadata.json`."""

    TYPE_NAME = "components.Pyramid"


class DomainClassifier(artifact.Artifact):
    """A small classifier trained on the data's labels: the `domain` feature space."""

    TYPE_NAME = "components.DomainClassifier"
