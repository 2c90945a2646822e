"""What every command reports as one line (`error: ...`, exit 2, no traceback): mistakes the user can fix
in the command, the config, the data or a shared artifact. Anything else is a bug and keeps its traceback."""

from __future__ import annotations

from kdlight.config import ConfigError
from kdlight.data.readers import BadRowError, DataSourceError
from kdlight.trust import RefusedArtifact
from kdlight.utils.hub import HubUnavailableError
from kdlight.utils.plugins import PluginImportError


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception types that mean "fix your input" (imported here, not at the top: commands call this
    after their cheap checks, and the data module imports numpy)."""
    return (ConfigError, DataSourceError, BadRowError, HubUnavailableError, PluginImportError, RefusedArtifact)
