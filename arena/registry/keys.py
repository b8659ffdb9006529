"""Encryption at rest of endpoint API keys (Fernet, with MultiFernet so keys can be rotated)."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from arena.config import Settings


class KeyRing:
    """Encrypts with the newest key; decrypts with any key still listed."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is needed")
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        old = [k.strip() for k in settings.old_secret_keys.split(",") if k.strip()]
        return cls([settings.resolved_secret_key(), *old])

    def encrypt(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ValueError(
                "an endpoint key could not be decrypted: ARENA_SECRET_KEY changed without "
                "listing the old key in ARENA_OLD_SECRET_KEYS"
            ) from None

    def rotate(self, token: str) -> str:
        """The same secret encrypted with the newest key (MultiFernet.rotate)."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise ValueError(
                "an endpoint key could not be decrypted with any listed key; list the key it "
                "was encrypted with in ARENA_OLD_SECRET_KEYS"
            ) from None


def generate_key() -> str:
    return Fernet.generate_key().decode()


def last4(secret: str) -> str:
    return secret[-4:] if len(secret) >= 8 else ""
