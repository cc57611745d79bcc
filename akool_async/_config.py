"""Credentials and settings, from arguments first and ``AKOOL_*`` variables second.

Secrets are held in `Secret`, whose ``repr`` and ``str`` never show the value, so a
session, an error or a log line can be printed without leaking them.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from typing import Final

import attrs
import httpx

from ._errors import InvalidInput, MissingCredentials
from ._validate import http_url

__all__ = [
    "DEFAULT_BASE_URL",
    "AuthMode",
    "Credentials",
    "Secret",
    "base_url_problem",
    "resolve_base_url",
]

DEFAULT_BASE_URL: Final = "https://openapi.akool.com"

ENV_API_KEY: Final = "AKOOL_API_KEY"
ENV_TOKEN: Final = "AKOOL_TOKEN"  # noqa: S105 - a variable's name, not a secret
ENV_CLIENT_ID: Final = "AKOOL_CLIENT_ID"
ENV_CLIENT_SECRET: Final = "AKOOL_CLIENT_SECRET"  # noqa: S105 - a variable's name, not a secret
ENV_BASE_URL: Final = "AKOOL_BASE_URL"


@attrs.frozen(repr=False)
class Secret:
    """A credential that never prints: ``repr`` and ``str`` show ``'********'``."""

    _value: str = attrs.field(alias="value")

    def reveal(self) -> str:
        """The secret itself, for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__


class AuthMode(enum.Enum):
    """How requests authenticate."""

    API_KEY = "api_key"
    """Header ``x-api-key`` on every request."""
    TOKEN = "token"  # noqa: S105 - a mode's name, not a secret
    """Header ``Authorization: Bearer <token>``, the token given as is."""
    CLIENT_CREDENTIALS = "client_credentials"
    """A token from ``POST /api/open/v3/getToken``, fetched lazily and renewed on code 1101."""


@attrs.frozen(repr=False)
class Credentials:
    """Resolved credentials. At least one way to authenticate is present.

    ``client_id`` and ``client_secret`` may be present next to an api key or a token; they then
    verify and open webhook callbacks, and (next to a token) fetch a new one when it expires.
    """

    api_key: Secret | None = None
    token: Secret | None = None
    client_id: str | None = None
    client_secret: Secret | None = None

    @property
    def mode(self) -> AuthMode:
        """Which header requests carry: the api key wins, then a given token, then getToken."""
        if self.api_key is not None:
            return AuthMode.API_KEY
        if self.token is not None:
            return AuthMode.TOKEN
        return AuthMode.CLIENT_CREDENTIALS

    @property
    def has_client_credentials(self) -> bool:
        """Whether a token can be fetched (and so renewed) through getToken."""
        return self.client_id is not None and self.client_secret is not None

    def __repr__(self) -> str:
        present = [
            name
            for name, value in (
                ("api_key", self.api_key),
                ("token", self.token),
                ("client_id", self.client_id),
                ("client_secret", self.client_secret),
            )
            if value is not None
        ]
        return f"Credentials(mode={self.mode.value!r}, given={present!r})"

    @classmethod
    def resolve(
        cls,
        *,
        api_key: str | None,
        token: str | None,
        client_id: str | None,
        client_secret: str | None,
        environ: Mapping[str, str] | None = None,
    ) -> Credentials:
        """Credentials from arguments or, when no argument names any, from ``AKOOL_*`` variables.

        Arguments and variables are never mixed: one explicit credential means the variables are
        not read, so an ``AKOOL_API_KEY`` left in a shell cannot override the ``token=`` you gave.

        Raises:
            MissingCredentials: Nothing usable was given or found.
            InvalidInput: A credential is empty, or only half of a client id / secret pair is given.
        """
        given = {
            "api_key": api_key,
            "token": token,
            "client_id": client_id,
            "client_secret": client_secret,
        }
        source = "argument"
        names = {name: name for name in given}
        if all(value is None for value in given.values()):
            given, source = _from_environment(os.environ if environ is None else environ)
            names = dict(_VARIABLES)
        for name, value in given.items():
            if value is not None and not value.strip():
                raise InvalidInput(
                    f"{names[name]} is empty; give a non-empty value or leave it out"
                )
            if value is not None:
                _check_sendable(names[name], value)
        if given["api_key"] is not None and given["token"] is not None:
            raise InvalidInput(
                "give either api_key or token, not both: Akool would silently use the token "
                "and ignore the key"
            )
        if (given["client_id"] is None) != (given["client_secret"] is None):
            missing = "client_secret" if given["client_secret"] is None else "client_id"
            raise InvalidInput(
                f"client_id and client_secret go together; the {source} for {missing} is missing"
            )
        if all(value is None for value in given.values()):
            raise MissingCredentials(
                "no Akool credentials: pass api_key=, token=, or client_id= and client_secret= "
                f"to AkoolSession, or set {ENV_API_KEY} (or {ENV_TOKEN}, or {ENV_CLIENT_ID} and "
                f"{ENV_CLIENT_SECRET}) in the environment"
            )

        def secret(value: str | None) -> Secret | None:
            return None if value is None else Secret(value)

        return cls(
            api_key=secret(given["api_key"]),
            token=secret(given["token"]),
            client_id=given["client_id"],
            client_secret=secret(given["client_secret"]),
        )


_VARIABLES: Final = {
    "api_key": ENV_API_KEY,
    "token": ENV_TOKEN,
    "client_id": ENV_CLIENT_ID,
    "client_secret": ENV_CLIENT_SECRET,
}
_PRINTABLE_ASCII: Final = range(0x21, 0x7F)


def _check_sendable(name: str, value: str) -> None:
    """A credential is printable ASCII without white space, as HTTP headers carry it.

    A stray space, carriage return or newline (pasted with the key) or a non-ASCII character
    would make every request fail before it leaves; it is refused here instead, by its class
    and position, never quoting the value.
    """
    for position, char in enumerate(value, start=1):
        if ord(char) in _PRINTABLE_ASCII:
            continue
        if ord(char) > _PRINTABLE_ASCII.stop:
            kind = "a non-ASCII character"
        elif char == " ":
            kind = "a space"
        else:
            kind = "a control character (such as a carriage return, newline or tab)"
        raise InvalidInput(
            f"{name} contains {kind} at character {position}: a credential is printable ASCII "
            "without spaces; copy it again without the stray character"
        )


def _from_environment(env: Mapping[str, str]) -> tuple[dict[str, str | None], str]:
    """The credentials ``AKOOL_*`` variables give (empty ones count as absent)."""
    given = {name: env.get(variable) or None for name, variable in _VARIABLES.items()}
    return given, "environment variable"


def base_url_problem(name: str, candidate: str | httpx.URL) -> str:
    """What is said of a base URL ``name`` that `http_url` refuses."""
    return (
        f"{name} must be an absolute http(s) URL with no spaces around it and a port (if any) "
        f"from 1 to 65535, e.g. {DEFAULT_BASE_URL} or http://127.0.0.1:8787 "
        f"(got {_without_password(str(candidate))!r})"
    )


def _without_password(text: str) -> str:
    """``text`` with the password of its user info, if it parses as a URL with one, masked."""
    try:
        password = httpx.URL(text).password
    except (httpx.InvalidURL, ValueError, TypeError):
        return text
    return text.replace(password, "********") if password else text


def resolve_base_url(
    base_url: str | httpx.URL | None,
    *,
    http_client: httpx.AsyncClient | None = None,
    environ: Mapping[str, str] | None = None,
) -> httpx.URL:
    """The API root: the argument, else a passed client's ``base_url``, else ``AKOOL_BASE_URL``.

    Raises:
        InvalidInput: The URL is not an absolute http(s) URL, has a port outside 1..65535,
            white space around it, or a user name or password; the message names
            ``AKOOL_BASE_URL`` if it came from there.
    """
    env = os.environ if environ is None else environ
    candidate: str | httpx.URL
    name = "base_url"
    if base_url is not None:
        candidate = base_url
    elif http_client is not None and str(http_client.base_url):
        candidate = http_client.base_url
    else:
        candidate = env.get(ENV_BASE_URL) or DEFAULT_BASE_URL
        name = ENV_BASE_URL if env.get(ENV_BASE_URL) else name
    url = http_url(candidate, base_url_problem(name, candidate))
    if url.userinfo:
        # httpx would send it as Basic authentication next to Akool's own header, and a
        # password in a URL ends up in logs and messages: Akool's root has neither.
        raise InvalidInput(
            f"{name} must not carry a user name or password (got "
            f"{str(url.copy_with(username=None, password=None))!r} with one): Akool "
            "authenticates with the api key, the token or the client credentials"
        )
    # One trailing slash makes httpx's merge of relative paths predictable.
    return url.copy_with(path=url.path.rstrip("/") + "/", query=None, fragment=None)
