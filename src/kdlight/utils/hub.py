"""Fail fast, with a useful message, when the Hugging Face hub cannot be reached."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse


class HubUnavailableError(RuntimeError):
    """The hub (or another remote source) cannot be reached; the message says how to go local."""


def hub_offline_mode() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def require_reachable(url: str, what: str, local_hint: str, timeout: float = 5.0) -> None:
    """Raise HubUnavailableError within `timeout` seconds if `url`'s host does not accept a connection.

    Library loaders retry for minutes on a closed network; one TCP connect tells us at once.
    """
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return
    except OSError as err:
        raise HubUnavailableError(
            f"Cannot load {what}: {parsed.scheme}://{parsed.netloc} is unreachable ({err}). "
            f"To work offline, {local_hint}"
        ) from err
