"""TFX component: ingested images -> exact box-average pyramids (or, with pyramid.scale_factor > 0,
one image's scale pyramid), with Apache Beam."""

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component

from components import artifacts, pyramid_beam
from trainers.config import Config


@component
def BuildPyramid(config_json: Parameter[str], images: InputArtifact[artifacts.Examples],
                 pyramid: OutputArtifact[artifacts.Pyramid]) -> None:
    """Run the Beam pyramid stage (runner and options from `pyramid.*`) into `pyramid.uri`."""
    cfg = Config.from_json(config_json).pyramid
    metadata = pyramid_beam.run_pyramid(
        input_dir=images.uri, output_dir=pyramid.uri, grids=list(cfg.grids), runner=cfg.runner,
        beam_args=list(cfg.beam_args), num_shards=cfg.num_shards, scale_factor=cfg.scale_factor,
        min_side=cfg.min_side)
    pyramid.set_string_custom_property("grids", ",".join(str(g) for g in metadata["grids"]))
    if "scales" in metadata:
        pyramid.set_string_custom_property("scales", ",".join(f"{h}x{w}" for h, w in metadata["scales"]))
    pyramid.set_string_custom_property("fingerprint", str(metadata.get("fingerprint", "")))
