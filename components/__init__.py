"""TFX components and the Beam / image-source modules they call.

`components.Pyramid` and `components.DomainClassifier` are the custom artifact types of
`components.artifacts`, loaded on first use (this package imports nothing heavy): TFX's Kubeflow V2
entrypoint imports a custom type from its schema title, which is that path.
"""

_ARTIFACT_TYPES = ("Pyramid", "DomainClassifier")


def __getattr__(name: str):
    if name in _ARTIFACT_TYPES:
        from components import artifacts  # pylint: disable=import-outside-toplevel

        return getattr(artifacts, name)
    raise AttributeError(f"module 'components' has no attribute {name!r}")
