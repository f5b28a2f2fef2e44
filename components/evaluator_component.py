"""TFX component: evaluate the exported model, write metrics.json + report.html, bless or not."""

import os

import tensorflow as tf
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component

from components import artifacts
from components.records import ingested_dataset
from components.sources import load_images
from evaluators.blessing import summary
from evaluators.evaluate import EvalData, EvalOptions, evaluate_model
from evaluators.push import served_model_dir
from evaluators.features import get_feature_space
from evaluators.single_image import SIFID_SPACES
from evaluators.single_image_eval import evaluate_single_image
from trainers.config import Config


@component
def Evaluate(config_json: Parameter[str], model: InputArtifact[artifacts.Model],
             model_run: InputArtifact[artifacts.ModelRun],
             images: InputArtifact[artifacts.Examples],
             classifier: InputArtifact[artifacts.DomainClassifier],
             serving_root: Parameter[str],
             evaluation: OutputArtifact[artifacts.ModelEvaluation],
             blessing: OutputArtifact[artifacts.ModelBlessing]) -> None:
    """Metrics in every configured feature space (domain only when labels exist), next to the
    served model's (the latest version under `serving_root`, read when this stage runs) for rules
    such as `fid/domain<=baseline*1.05`."""
    config = Config.from_json(config_json)
    ev = config.eval
    served = served_model_dir(serving_root, config.export.model_name)
    print(f"[evaluate] served model: {served or 'none yet'}")
    if config.pyramid.scale_factor > 0:  # one image (e.g. PatchGenCN): its own evaluation
        image = next(iter(ingested_dataset(images.uri, "train")))["image"].numpy()
        metrics = evaluate_single_image(
            model.uri, image, evaluation.uri, spaces=[s for s in ev.features if s in SIFID_SPACES],
            num_samples=ev.num_samples, thresholds=list(ev.thresholds), served_model_dir=served,
            seed=config.train.seed, inception_weights=ev.inception_weights,
            log_dir=os.path.join(model_run.uri, "logs"))
        _record(metrics, evaluation, blessing)
        return
    size, channels = config.data.image_size, config.data.channels
    train_x, train_y = load_images(f"ingested:{images.uri}:train", size, channels)
    eval_x, eval_y = load_images(f"ingested:{images.uri}:eval", size, channels)
    spaces = {}
    for name in ev.features:
        if name == "domain" and not classifier.get_int_custom_property("available"):
            print("[evaluate] skipping the domain feature space: the data has no labels")
            continue
        spaces[name] = get_feature_space(
            name, classifier_dir=classifier.uri if name == "domain" else None,
            inception_weights=ev.inception_weights or None,
            inception_2015_graph=ev.inception_2015_graph or None)
    ood_sets = {src: load_images(src, size, channels, ev.num_ood)[0] for src in ev.ood_sources}
    translate_images = (load_images(ev.translate_source, size, channels, ev.num_translate)[0]
                        if ev.translate_source else None)
    random_dir = os.path.join(model_run.uri, "random_init_model")
    data = EvalData(train_x, train_y, test_images=eval_x, test_labels=eval_y, ood_sets=ood_sets,
                    translate_images=translate_images, translate_name=ev.translate_source,
                    train_images=train_x)
    options = EvalOptions(
        num_samples=ev.num_samples, kid_subsets=ev.kid_subsets, num_real=ev.num_real,
        label_counts=tuple(ev.svm_label_counts), masks=tuple(ev.inpaint_masks),
        num_inpaint=ev.num_inpaint, num_diversity=ev.num_diversity, num_ood=ev.num_ood,
        num_denoise=ev.num_denoise, denoise_levels=tuple(ev.denoise_levels),
        num_memorization=ev.num_memorization, memorization_spaces=tuple(ev.memorization_spaces),
        thresholds=tuple(ev.thresholds), seed=config.train.seed,
        log_dir=os.path.join(model_run.uri, "logs"),
        random_model_dir=random_dir if tf.io.gfile.exists(random_dir) else None,
        served_model_dir=served)
    metrics = evaluate_model(model.uri, data, evaluation.uri, spaces, options)
    _record(metrics, evaluation, blessing)


def _record(metrics: dict, evaluation, blessing) -> None:
    """The BLESSED / NOT_BLESSED marker and the artifacts' properties."""
    blessed = bool(metrics["blessing"]["blessed"])
    marker = "BLESSED" if blessed else "NOT_BLESSED"
    with tf.io.gfile.GFile(os.path.join(blessing.uri, marker), "w") as f:
        f.write("")
    blessing.set_int_custom_property("blessed", int(blessed))
    blessing.set_string_custom_property("reason", summary(metrics["blessing"]))
    evaluation.set_string_custom_property("report", os.path.join(evaluation.uri, "report.html"))
