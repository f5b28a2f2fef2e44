# The container image of the Kubeflow pipeline's steps, in TFX's convention for custom images:
# FROM the TFX release the pipeline is compiled with, this package installed on top. Build and push
# it from the top of the checkout, then compile the spec with the same tag:
#
#   docker build -t REGISTRY/multigrid-ebm:0.1.0 .
#   docker push REGISTRY/multigrid-ebm:0.1.0
#   mgebm compile --preset NAME --engine kubeflow --output spec.json \
#       --pipeline-root gs://BUCKET/mgebm --image REGISTRY/multigrid-ebm:0.1.0
#
# Every step of the spec runs `python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor
# --executor_class_path components.<module>.<Component>_Executor ...`, so `python` here must have
# TFX 1.16, TensorFlow 2.16 and this package. Nothing is downloaded when a step runs: the offline
# data and weights the presets use come inside the pinned packages. The same install (a wheel of
# this checkout with the pinned requirements in a fresh environment) is what
# tests/test_run_spec_wheel.py builds and runs the compiled spec in.
#
# BASE_IMAGE: tensorflow/tfx:1.16.0 (Python 3.10 with TFX, TensorFlow 2.16 and Beam's SDK harness,
# which Dataflow uses as a custom worker container); any Python 3.10 image works too (e.g.
# --build-arg BASE_IMAGE=python:3.10-slim, far smaller): the pins install the whole stack.
ARG BASE_IMAGE=tensorflow/tfx:1.16.0
FROM ${BASE_IMAGE}

# The Keras setting `mgebm` itself makes before TensorFlow loads (pipeline/cli.py), so a task runs
# as under `mgebm run`: TFX 1.16 is made for legacy Keras 2 (TF_USE_LEGACY_KERAS=1), this package's
# models use Keras 3 directly. pipeline/run_spec.py's IMAGE_ENV holds the same values (a test
# checks they match).
ENV TF_USE_LEGACY_KERAS=0 PYTHONUNBUFFERED=1

WORKDIR /tmp/multigrid-ebm
COPY pyproject.toml README.md ./
COPY requirements/primary-py310.txt requirements/
COPY pipeline pipeline/
COPY components components/
COPY trainers trainers/
COPY evaluators evaluators/
# A wheel of this checkout (no editable install), with its tfx and dask extras, every package at
# the version requirements/primary-py310.txt pins (the environment the tests run in).
RUN python -c "import sys; v = sys.version_info[:2]; assert v == (3, 10), \
        f'requirements/primary-py310.txt needs Python 3.10; {sys.executable} is {v}'" \
 && python -m pip wheel --no-cache-dir --no-deps -w dist . \
 && python -m pip install --no-cache-dir -r requirements/primary-py310.txt \
        "$(ls dist/multigrid_ebm-*.whl)[tfx,dask]" \
 && cd / && rm -rf /tmp/multigrid-ebm \
 && python -c "import components.pyramid_component, pipeline.run_spec; print('multigrid-ebm installed')"

# The pod's working folder: no checkout, the package comes from site-packages.
WORKDIR /
