"""Pipeline file for the `tfx` CLI (`tfx pipeline create --engine local --pipeline_path ...`).

The `tfx` CLI executes this file to build the pipeline and then runs it with LocalDagRunner.
The preset comes from the environment: MGEBM_PRESET (default `mnist5k-multigrid:smoke`),
MGEBM_WORKDIR (default `runs/tfx-<preset>`) and MGEBM_OVERRIDES (`;`-separated `k=v`).

    export LOCAL_HOME=$PWD/runs/tfx_home MGEBM_PRESET=mnist5k-multigrid:smoke
    tfx pipeline create --engine local --pipeline_path pipeline/tfx_local.py
    tfx run create --engine local --pipeline_name mgebm-mnist5k-multigrid-smoke
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "0")

from tfx.orchestration.local.local_dag_runner import LocalDagRunner  # noqa: E402

from pipeline.create_pipeline import create_pipeline, local_paths  # noqa: E402
from pipeline.presets import load_preset  # noqa: E402

PRESET = os.environ.get("MGEBM_PRESET", "mnist5k-multigrid:smoke")
OVERRIDES = [o for o in os.environ.get("MGEBM_OVERRIDES", "").split(";") if o.strip()]
WORKDIR = os.environ.get("MGEBM_WORKDIR", os.path.join("runs", "tfx-" + PRESET.replace(":", "-")))

if __name__ == "__main__":
    paths = local_paths(WORKDIR)
    LocalDagRunner().run(create_pipeline(
        load_preset(PRESET, OVERRIDES), paths["pipeline_root"], paths["metadata_path"],
        paths["serving_root"], paths["state_root"]))
