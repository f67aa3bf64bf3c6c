"""User-facing errors. Every mistake a user can make raises a ``TraitlabError`` subclass whose message says
what to do; the CLI prints it in one line and exits with code 2."""


class TraitlabError(Exception):
    """Base class of all errors caused by user input (paths, configs, artifacts, arguments)."""


class ConfigError(TraitlabError):
    """A config file, argument or option is malformed or inconsistent."""


class ModelLoadError(TraitlabError):
    """A model spec could not be resolved or loaded."""


class FamilyError(TraitlabError):
    """The model architecture is not covered by the family table, the structural guess or an override."""


class LayerError(TraitlabError):
    """A layer index is out of range for the model."""


class ArtifactError(TraitlabError):
    """An intervention artifact is missing, corrupt, or was made for another model."""


def validation_message(exc: Exception) -> str:
    """The first problem of a pydantic ``ValidationError`` as ``field.path: message`` (one line)."""
    errors = getattr(exc, "errors", None)
    if errors is None:
        return str(exc).splitlines()[0]
    first = errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "value"
    return f"{where}: {first['msg'].removeprefix('Value error, ')}"
