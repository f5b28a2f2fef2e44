"""TFX component: any image source -> ingested TFRecords (see `components/ingest.py`)."""

from tfx.dsl.component.experimental.annotations import OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component

from components import artifacts, ingest
from trainers.config import Config


@component
def IngestImages(config_json: Parameter[str], images: OutputArtifact[artifacts.Examples]) -> None:
    """Decode, check, resize and split the images named by `data.source` into `images.uri`."""
    config = Config.from_json(config_json)
    cfg, pyramid = config.data, config.pyramid
    summary = ingest.run_ingest(
        source=cfg.source, output_dir=images.uri, image_size=cfg.image_size,
        channels=cfg.channels, eval_fraction=cfg.eval_fraction,
        max_reject_fraction=cfg.max_reject_fraction, limit=cfg.limit, num_shards=cfg.num_shards,
        max_pixels=cfg.max_pixels, span=cfg.span, max_side=cfg.max_side,
        min_side=pyramid.min_side if pyramid.scale_factor > 0 else 0)
    images.split_names = '["train", "eval"]'
    images.set_string_custom_property("source", cfg.source)
    if summary["spans"]:  # not `span`: Examples has an int `span` property, and a custom one of
        # that name reaches a Kubeflow ExecutorOutput as `custom:span`
        images.set_string_custom_property("spans", ",".join(str(n) for n in summary["spans"]))
    images.set_int_custom_property("num_train", int(summary["counts"]["train"]))
    images.set_int_custom_property("num_eval", int(summary["counts"]["eval"]))
    images.set_int_custom_property("num_rejects", int(summary["counts"].get("rejected", 0)))
