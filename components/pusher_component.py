"""TFX component: copy a blessed SavedModel to `<serving_root>/<model_name>/<version>/`."""

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component

from components import artifacts
from evaluators.push import push_once
from trainers.config import Config


@component
def PushModel(config_json: Parameter[str], serving_root: Parameter[str],
              model: InputArtifact[artifacts.Model], blessing: InputArtifact[artifacts.ModelBlessing],
              pushed_model: OutputArtifact[artifacts.PushedModel]) -> None:
    """Push atomically when blessed; otherwise record `pushed = 0` and leave serving/ untouched."""
    if not blessing.get_int_custom_property("blessed"):
        pushed_model.set_int_custom_property("pushed", 0)
        reason = blessing.get_string_custom_property("reason") or "not blessed"
        pushed_model.set_string_custom_property("reason", reason)
        print(f"[push] nothing pushed: {reason}")
        return
    config = Config.from_json(config_json)
    # push_once: a rerun after a push killed between its rename and TFX's record of it finds
    # its model already served and does not serve it again as a second version.
    result = push_once(model.uri, serving_root, config.export.model_name)
    pushed_model.set_int_custom_property("pushed", 1)
    pushed_model.set_string_custom_property("pushed_destination", result["pushed_dir"])
    pushed_model.set_int_custom_property("pushed_version", int(result["version"]))
    if result.get("already_served"):
        print(f"[push] version {result['version']} already serves this model (a rerun after an "
              f"interrupted push): nothing copied, {result['pushed_dir']}")
    else:
        print(f"[push] pushed version {result['version']} to {result['pushed_dir']}")
