"""A keyring backend for tests, chosen with PYTHON_KEYRING_BACKEND as a user would choose theirs:
it raises what no KeyringError is for one login, as a vault plugin or a D-Bus backend may."""

from __future__ import annotations

from keyring.backend import KeyringBackend


class SealedForKirk(KeyringBackend):
    priority = 1  # type: ignore[assignment]  # keyring's own backends declare it so

    def get_password(self, service: str, username: str) -> str | None:
        if username.startswith("kirk@"):
            raise RuntimeError("the vault is sealed")
        return "a fine password"

    def set_password(self, service: str, username: str, password: str) -> None:
        raise NotImplementedError

    def delete_password(self, service: str, username: str) -> None:
        raise NotImplementedError
