"""TFX artifact types of multigrid-ebm (what passes between stages).

Standard TFX types where one fits (`Examples` for ingested images, `Model`, `ModelRun`,
`ModelEvaluation`, `ModelBlessing`, `PushedModel`); one custom type for the pyramid records.
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

    TYPE_NAME = "mgebm.Pyramid"


class DomainClassifier(artifact.Artifact):
    """A small classifier trained on the data's labels: the `domain` feature space."""

    TYPE_NAME = "mgebm.DomainClassifier"
