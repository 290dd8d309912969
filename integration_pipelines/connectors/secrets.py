"""Where a secret's value comes from: the environment, a file named by `<NAME>_FILE`, or a secrets manager.

Order, for every secret variable `NAME` (a system's `STRIPE_API_KEY`, a webhook's `STRIPE_WEBHOOK_SECRET`,
`IP_TOKEN_STORE_KEY` ...):

1. `NAME` in the environment (or `.env`);
2. `NAME_FILE`: the path of a file holding the value (Docker and Kubernetes secrets mount one file per secret);
   one trailing newline (`\\n` or `\\r\\n`) is dropped, nothing else. Setting both `NAME` and `NAME_FILE` is a
   mistake (which one wins?) and is refused with a message naming both;
3. AWS Secrets Manager, when `IP_AWS_SECRETS_MANAGER_SECRET_ID` names a secret: its `SecretString` is a JSON
   object whose keys are variable names (`{"STRIPE_READ_API_KEY": "rk_live_..."}`), read once per process
   through pydantic-settings' `AWSSecretsManagerSettingsSource` (boto3, optional: `pip install
   'pydantic-settings[aws-secrets-manager]'`). `IP_AWS_SECRETS_MANAGER_REGION` picks the region (else boto3's).

Every value read here is registered for redaction before it is returned. A file that cannot be read is one
paragraph naming the variable and the path, never the content.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from .errors import ConfigurationError
from .redaction import register_secret

FILE_SUFFIX = "_FILE"
AWS_SECRET_ID_ENV = "IP_AWS_SECRETS_MANAGER_SECRET_ID"
AWS_REGION_ENV = "IP_AWS_SECRETS_MANAGER_REGION"
MAX_SECRET_FILE_BYTES = 64 * 1024

_manager_lock = threading.Lock()
_manager_cache: dict[tuple[str, str | None], dict[str, str]] = {}


class SecretSourceError(ConfigurationError):
    """A secret's file or manager cannot be read; the message names the variable, never the value."""


def read_secret_file(name: str, path: str) -> str:
    """The value in the file `path` (named by `<name>_FILE`), one trailing newline dropped."""
    variable = f"{name}{FILE_SUFFIX}"
    target = Path(path).expanduser()
    try:
        if target.is_dir():
            raise IsADirectoryError(21, "is a folder, not a file")
        if target.stat().st_size > MAX_SECRET_FILE_BYTES:
            raise SecretSourceError(
                f"{variable} points at {target}, which is larger than {MAX_SECRET_FILE_BYTES // 1024} KiB; a secret "
                "file holds one value. Point it at the file that holds only the secret.")
        data = target.read_bytes()
    except SecretSourceError:
        raise
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SecretSourceError(
            f"{variable} is set to {target}, which cannot be read ({reason}). {variable} must name a readable file "
            f"holding the value of {name}: check the path and that the user running the pipelines may read it "
            f"(a Kubernetes or Docker secret is mounted read-only under /run/secrets or a volume path), or unset "
            f"{variable} and set {name} instead.") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretSourceError(
            f"{variable} is set to {target}, which is not UTF-8 text; a secret file holds the value as text.") from None
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if not text:
        raise SecretSourceError(f"{variable} is set to {target}, which is empty; put the value of {name} in it, "
                                f"or unset {variable}.")
    register_secret(text)
    return text


def manager_values(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables held in the configured secrets manager (empty when none is configured), read once."""
    env = os.environ if environ is None else environ
    secret_id = env.get(AWS_SECRET_ID_ENV)
    if not secret_id:
        return {}
    region = env.get(AWS_REGION_ENV) or None
    with _manager_lock:
        cached = _manager_cache.get((secret_id, region))
        if cached is not None:
            return cached
        try:
            from pydantic_settings import AWSSecretsManagerSettingsSource

            source = AWSSecretsManagerSettingsSource(BaseSettings, secret_id, region_name=region)
            values = {str(k): str(v) for k, v in source.env_vars.items() if v is not None}
        except ImportError:
            raise SecretSourceError(
                f"{AWS_SECRET_ID_ENV} is set, but the AWS Secrets Manager client is not installed. Install it with "
                "`pip install 'pydantic-settings[aws-secrets-manager]'` (boto3), or unset "
                f"{AWS_SECRET_ID_ENV} and give the secrets as variables or *_FILE files.") from None
        except Exception as exc:  # boto3's errors: no credentials, access denied, not found, not JSON
            raise SecretSourceError(
                f"AWS Secrets Manager could not give the secret {secret_id!r} named by {AWS_SECRET_ID_ENV} "
                f"({type(exc).__name__}: {str(exc)[:200]}). It must be a JSON object of variable names and values, "
                "readable by this process's AWS identity (secretsmanager:GetSecretValue).") from None
        for value in values.values():
            register_secret(value)
        _manager_cache[(secret_id, region)] = values
        return values


def clear_manager_cache() -> None:
    with _manager_lock:
        _manager_cache.clear()


def lookup(name: str, environ: Mapping[str, str] | None = None, *, secret: bool = True) -> str | None:
    """The value of variable `name` from the environment, its `_FILE`, or the secrets manager; None if unset.

    `secret` values are registered for redaction (file and manager values always are)."""
    env = os.environ if environ is None else environ
    direct = env.get(name) or None
    path = env.get(f"{name}{FILE_SUFFIX}") or None
    if direct and path:
        raise SecretSourceError(
            f"Both {name} and {name}{FILE_SUFFIX} are set; set only one (the value itself, or the path of a file "
            "holding it).")
    if direct:
        value: str | None = direct
    elif path:
        value = read_secret_file(name, path)
    else:
        value = manager_values(env).get(name) or None
    if value and secret:
        register_secret(value)
    return value


def is_set(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether `name` is given in any of the ways `lookup` reads, without reading a file."""
    env = os.environ if environ is None else environ
    return bool(env.get(name) or env.get(f"{name}{FILE_SUFFIX}") or name in manager_values(env))


class SecretFilesSource(PydanticBaseSettingsSource):
    """A pydantic-settings source that reads each field's variable from `<VAR>_FILE` or the secrets manager.

    Put it after the environment and `.env` sources (`settings_customise_sources`): a variable set directly
    wins, and the field's default applies only when none of them holds a value."""

    def __init__(self, settings_cls: type[BaseSettings], fields: set[str] | None = None) -> None:
        super().__init__(settings_cls)
        self.prefix = str(settings_cls.model_config.get("env_prefix") or "")
        self.fields = fields

    def _variable(self, field_name: str, field: FieldInfo) -> str:
        alias = field.validation_alias if isinstance(field.validation_alias, str) else None
        return (alias or f"{self.prefix}{field_name}").upper()

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        name = self._variable(field_name, field)
        if os.environ.get(name):  # the environment source has it; a *_FILE beside it is still an error
            if os.environ.get(f"{name}{FILE_SUFFIX}"):
                lookup(name)
            return None, field_name, False
        path = os.environ.get(f"{name}{FILE_SUFFIX}")
        value = read_secret_file(name, path) if path else manager_values().get(name)
        return value, field_name, False

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for field_name, field in self.settings_cls.model_fields.items():
            if self.fields is not None and field_name not in self.fields:
                continue
            value, key, _ = self.get_field_value(field, field_name)
            if value is not None:
                found[key] = value
        return found


def with_secret_files(settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                      env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                      file_secret_settings: PydanticBaseSettingsSource, *, fields: set[str] | None = None,
                      ) -> tuple[PydanticBaseSettingsSource, ...]:
    """For `settings_customise_sources`: init, env, .env, then `*_FILE` / the manager for `fields` (None = all)."""
    return (init_settings, env_settings, dotenv_settings, SecretFilesSource(settings_cls, fields),
            file_secret_settings)


class SecretFileSettings(BaseSettings):
    """Settings whose `secret_fields` (None: every field) may also come from `<NAME>_FILE` or the secrets
    manager, after the environment and `.env`. Subclass it instead of writing `settings_customise_sources`."""

    secret_fields: ClassVar[frozenset[str] | None] = None

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        fields = None if cls.secret_fields is None else set(cls.secret_fields)
        return with_secret_files(settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings,
                                 fields=fields)
