"""Where the user commands send their requests and with which key: named profiles in
``$XDG_CONFIG_HOME/genobase/config.toml`` (default ``~/.config/genobase/``), and the precedence
that picks the endpoint and the key of one command.

Precedence, for each of the endpoint and the key: a flag (``--endpoint``, ``--api-key``), then the
environment (``GENOBASE_ENDPOINT``, ``GENOBASE_API_KEY``), then the profile (``--profile``, else
``GENOBASE_PROFILE``, else ``default``), then the stack file of the current directory (what
``genobase up`` wrote: the local intake and its admin key). A key read from a profile or the stack
file goes only to that source's own endpoint. The one exception: a profile named explicitly
(``--profile``, or ``GENOBASE_PROFILE``) with ``--endpoint`` on the same command line: both were
typed together. An endpoint from the environment (a ``GENOBASE_ENDPOINT`` left exported for a test
host) never receives a profile's key, and no endpoint ever receives the stack's admin key but the
stack's own.

A key is stripped of surrounding whitespace (a key file saved with CRLF) and must be visible
ASCII: anything else is refused before a request is built, without echoing the key.

The file holds keys, so it is written mode 600 in a directory of mode 700, atomically (a temporary
file renamed over it). It is TOML read with ``tomllib``; the writer below writes only what the CLI
itself keeps (tables of strings), quoting with JSON's escapes, which TOML's basic strings share.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from genobase.errors import CliError, ExitCode

DEFAULT_PROFILE = "default"
# Bare TOML keys (no dots, no quotes needed), short enough to type.
PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")  # used with fullmatch ($ passes a final "\n")
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})
ENDPOINT_ENV = "GENOBASE_ENDPOINT"
API_KEY_ENV = "GENOBASE_API_KEY"
PROFILE_ENV = "GENOBASE_PROFILE"


@dataclass(frozen=True)
class Profile:
    endpoint: str
    api_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Connection:
    """The endpoint and key one command uses, and where each came from (for the messages; the key
    itself is never shown)."""

    endpoint: str
    api_key: str | None = field(repr=False)
    endpoint_from: str
    key_from: str | None
    withheld: str | None = None  # why a profile's or the stack file's key was not sent, if it was not

    @property
    def key_source(self) -> str:
        """Where the key came from, for the messages (never the key itself)."""
        if self.key_from:
            return f"key from {self.key_from}"
        return f"no key sent ({self.withheld})" if self.withheld else "no key sent"


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "genobase"


def config_path() -> Path:
    return config_dir() / "config.toml"


def data_dir() -> Path:
    """Where interrupted uploads are remembered (``$XDG_DATA_HOME/genobase``); ``GENOBASE_HOME``,
    as the operator commands use it, wins where set."""
    if home := os.environ.get("GENOBASE_HOME"):
        return Path(home)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "genobase"


def normalise_endpoint(url: str) -> str:
    """The endpoint without surrounding blanks and trailing ``/``; refused (usage error) unless an
    ``http(s)://host[:port][/path]`` URL with no credentials, query, fragment, whitespace or
    control character (each would end up in a request line or in the config file)."""
    url = url.strip().rstrip("/")
    example = "e.g. --endpoint http://127.0.0.1:8000"
    if any(character.isspace() or not character.isprintable() for character in url):
        raise CliError(ExitCode.USAGE, "the endpoint has whitespace or control characters", example)
    try:
        parts = urlsplit(url)
        port_valid = parts.port is None or parts.port > 0
    except ValueError:
        parts, port_valid = urlsplit(""), False
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise CliError(
            ExitCode.USAGE, "the endpoint has credentials in it (user:password@)", "pass the key with --api-key"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_valid:
        raise CliError(ExitCode.USAGE, f"not an http(s) URL: {url!r}", example)
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise CliError(ExitCode.USAGE, f"the endpoint has a query or fragment: {url!r}", example)
    return url


def plain_http_elsewhere(endpoint: str) -> bool:
    """True when ``endpoint`` is ``http://`` to a host that is not this machine (127.0.0.0/8, ::1,
    localhost): a key sent there crosses the network unencrypted."""
    parts = urlsplit(endpoint)
    if parts.scheme != "http":
        return False
    host = (parts.hostname or "").lower()
    if host in LOOPBACK_NAMES:
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def check_api_key(key: str) -> str:
    """The key stripped of surrounding whitespace (a key file saved with CRLF, a pasted space);
    a usage error if what remains has anything but visible ASCII. The key is never echoed: the
    HTTP library's own error would print the whole header."""
    key = key.strip()
    if not key or any(not "\x21" <= character <= "\x7e" for character in key):
        raise CliError(
            ExitCode.USAGE, "the API key has invalid characters", "a key is visible ASCII: check how it was copied"
        )
    return key


def check_profile_name(name: str) -> str:
    if not PROFILE_NAME.fullmatch(name):
        raise CliError(ExitCode.USAGE, f"invalid profile name {name!r}", "letters, digits, '-' and '_' (up to 63)")
    return name


def read_profiles(path: Path | None = None) -> dict[str, Profile]:
    """The profiles in the config file (none when there is no file)."""
    path = path or config_path()
    try:
        with path.open("rb") as source:
            document = tomllib.load(source)
    except FileNotFoundError:
        return {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CliError(ExitCode.USAGE, f"{path} is not valid TOML: {exc}", "fix it, or log in again") from None
    profiles: dict[str, Profile] = {}
    tables = document.get("profiles", {})
    if not isinstance(tables, dict):
        raise CliError(ExitCode.USAGE, f"{path}: 'profiles' is not a table", "fix it, or log in again")
    for name, table in tables.items():
        if not isinstance(table, dict) or not isinstance(table.get("endpoint"), str):
            raise CliError(ExitCode.USAGE, f"{path}: profile {name!r} has no endpoint", "log in again")
        key = table.get("api_key")
        profiles[name] = Profile(table["endpoint"], key if isinstance(key, str) else None)
    return profiles


def toml_string(value: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, except that TOML also wants DEL escaped."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def render_profiles(profiles: Mapping[str, Profile]) -> str:
    lines = ["# genobase CLI profiles, written by `genobase login` (it holds API keys: keep it mode 600)"]
    for name in sorted(profiles):
        profile = profiles[name]
        lines += ["", f"[profiles.{check_profile_name(name)}]", f"endpoint = {toml_string(profile.endpoint)}"]
        if profile.api_key is not None:
            lines.append(f"api_key = {toml_string(profile.api_key)}")
    return "\n".join(lines) + "\n"


def write_profiles(profiles: Mapping[str, Profile], path: Path | None = None) -> Path:
    """Write the file atomically: directory 700, file 600 from its creation (never readable by others,
    not even for a moment)."""
    path = path or config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)  # an existing directory too: it is ours
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(render_profiles(profiles))
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)  # whatever the umask did
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def save_profile(name: str, profile: Profile, path: Path | None = None) -> Path:
    path = path or config_path()
    profiles = read_profiles(path)
    key = check_api_key(profile.api_key) if profile.api_key is not None else None
    profiles[check_profile_name(name)] = Profile(normalise_endpoint(profile.endpoint), key)
    return write_profiles(profiles, path)


def loose_mode(path: Path) -> int | None:
    """The config file's mode when others may read it (a file copied by hand), else None."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    return mode if mode & 0o077 else None


def _stack_defaults() -> tuple[str, str | None, str]:
    """The endpoint and key ``genobase up`` wrote to the stack file (``.genobase/stack.env`` of the
    current directory, or ``GENOBASE_STACK_FILE``); the intake's default address without one."""
    from shared.runtime.settings import load_settings, stack_file

    path = stack_file()
    settings = load_settings()
    key = settings.api_key.get_secret_value() if settings.api_key is not None else None
    source = f"the stack file {path}" if path.exists() else "the default (no profile, no stack file)"
    return settings.status_base_url.rstrip("/"), key if path.exists() else None, source


def resolve(endpoint: str | None = None, api_key: str | None = None, profile: str | None = None) -> Connection:
    """The endpoint and key of one command, by the precedence in the module's docstring."""
    endpoint_from: str | None = None
    key_from: str | None = None
    withheld: str | None = None
    endpoint_flag = bool(endpoint)
    if endpoint:
        endpoint_from = "--endpoint"
    elif os.environ.get(ENDPOINT_ENV):
        endpoint, endpoint_from = os.environ[ENDPOINT_ENV], ENDPOINT_ENV
    if api_key:
        key_from = "--api-key"
    elif os.environ.get(API_KEY_ENV):
        api_key, key_from = os.environ[API_KEY_ENV], API_KEY_ENV
    named = profile or os.environ.get(PROFILE_ENV) or None
    name = check_profile_name(named or DEFAULT_PROFILE)
    chosen = read_profiles().get(name)
    if named and chosen is None:
        raise CliError(
            ExitCode.USAGE,
            f"no profile {name!r} in {config_path()}",
            f"run `genobase login --endpoint URL --profile {name}`",
        )
    if chosen is not None:
        source = f"profile {name!r}"
        if endpoint is None:
            endpoint, endpoint_from = chosen.endpoint, source
        same = normalise_endpoint(endpoint) == normalise_endpoint(chosen.endpoint)
        if api_key is None and chosen.api_key is not None:
            if same or (named and endpoint_flag):
                api_key, key_from = chosen.api_key, source
            else:
                withheld = f"the key of {source} goes only to {normalise_endpoint(chosen.endpoint)}"
    else:
        stack_endpoint, stack_key, source = _stack_defaults()
        if endpoint is None:
            endpoint, endpoint_from = stack_endpoint, source
        if api_key is None and stack_key is not None:
            if normalise_endpoint(endpoint) == stack_endpoint:
                api_key, key_from = stack_key, source
            else:
                withheld = f"the key of {source} goes only to {stack_endpoint}"
    assert endpoint is not None and endpoint_from is not None
    key = check_api_key(api_key) if api_key is not None else None
    return Connection(normalise_endpoint(endpoint), key, endpoint_from, key_from, withheld)
