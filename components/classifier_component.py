"""TFX component: the `domain` feature space, a small classifier trained on the data's labels."""

import json
import os

import tensorflow as tf
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component

from components import artifacts
from components.sources import load_images
from evaluators.domain_classifier import train_classifier
from trainers.config import Config


@component
def TrainDomainClassifier(config_json: Parameter[str], images: InputArtifact[artifacts.Examples],
                          classifier: OutputArtifact[artifacts.DomainClassifier]) -> None:
    """Train on the ingested train split; unlabelled data gives an `available: false` artifact."""
    config = Config.from_json(config_json)
    x, y = load_images(f"ingested:{images.uri}:train", config.data.image_size, config.data.channels)
    if len(y) == 0 or (y < 0).any() or len(set(y.tolist())) < 2:
        with tf.io.gfile.GFile(os.path.join(classifier.uri, "unavailable.json"), "w") as f:
            json.dump({"available": False, "reason": "the data has no class labels"}, f)
        classifier.set_int_custom_property("available", 0)
        return
    info = train_classifier(x, y, classifier.uri, epochs=config.eval.classifier_epochs,
                            seed=config.train.seed)
    classifier.set_int_custom_property("available", 1)
    classifier.set_float_custom_property("accuracy", float(info["accuracy"]))
