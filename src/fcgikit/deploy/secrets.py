"""Secrets: read where fcgikit runs, delivered into a tmpfs of the containers that use them.

A secret's value is read from a file or an environment variable of the machine running
fcgikit, at the moment it is needed (`up`, `scale`, `rollback`). It never enters an image,
a label, an environment of `docker run`, a config hash or anything printed:

- each container that uses secrets has a tmpfs at /run/secrets (its user only, mode 0700)
  and its command is wrapped so the program starts only once the secrets are there
  (`wrap_command`);
- right after the container starts, and before it is waited for or put behind nginx,
  fcgikit writes each value into /run/secrets/NAME with `docker exec` (the value travels
  in the exec's environment, base64, not in its argv), then the list of variables for
  `deliver: env` secrets, then the `.ready` mark;
- the wrapper exports the `deliver: env` ones as environment variables of the program
  (and of nothing else: `docker inspect` does not show them) and execs it.

A secret whose value changed makes `up` replace the containers that hold it: fcgikit
compares the SHA-256 of each file inside the container with the value it reads now
(`check_command`); no digest is stored anywhere.

A container the engine restarts (a crash of its main process, a daemon restart, a reboot)
gets a new, empty tmpfs: its program waits for the secrets instead of starting without
them, the healthcheck reports it unhealthy, and the next `fcgikit up` replaces it.

On Docker Swarm the same names become Docker secrets (`docker_secret_data`), mounted at
the same /run/secrets/NAME, so the app reads them the same way.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shlex
from collections.abc import Iterable, Mapping, Sequence

from .errors import FcgikitError
from .spec import StackSpec

SECRETS_DIR = "/run/secrets"
READY = ".ready"  # written last: the wrapper starts the program once it exists
ENV_LIST = ".env"  # "VARIABLE NAME" per line: the deliver: env secrets
MAX_BYTES = 64 * 1024  # one exec's environment string stays far below Linux's 128 KiB
TMPFS_SIZE = "1m"

# A mount: (secret name, environment variable or "" for a file only). Not a value.
Mount = tuple[str, str]

# Waits for the delivery, exports the env secrets, then becomes the program ("$@").
WAIT_SCRIPT = (
    # As PID 1 the shell would ignore `docker stop`'s signal and wait out the stop timeout.
    "trap 'exit 143' TERM INT QUIT; "
    f'd={SECRETS_DIR}; n=0; '
    f'while [ ! -e "$d/{READY}" ]; do '
    f'if [ $n = 30 ]; then echo "fcgikit: waiting for secrets in $d (delivered by fcgikit up; '
    f'a container restarted by the engine gets them again when fcgikit up replaces it)" >&2; fi; '
    f'n=$((n + 1)); sleep 0.1; done; '
    f'if [ -e "$d/{ENV_LIST}" ]; then '
    f'while read -r var name; do export "$var=$(cat "$d/$name")"; done < "$d/{ENV_LIST}"; fi; '
    f'exec "$@"'
)


def wrap_command(command: Sequence[str]) -> tuple[str, ...]:
    return ("sh", "-c", WAIT_SCRIPT, "fcgikit-secrets", *command)


def tmpfs(uid: int) -> tuple[str, str]:
    """The tmpfs the secrets live in: only the container's user can read it."""
    return (SECRETS_DIR, f"uid={uid},gid={uid},mode=0700,size={TMPFS_SIZE}")


def mounts_for(spec: StackSpec, names: Iterable[str]) -> tuple[Mount, ...]:
    return tuple((name, spec.secrets[name].env_variable(name)) for name in names)


def label_value(mounts: Sequence[Mount]) -> str:
    """For the container's label: the names (and variables), never values."""
    return ",".join(f"{name}={variable}" if variable else name for name, variable in mounts)


def mounts_from_label(value: str) -> tuple[Mount, ...]:
    mounts = []
    for item in filter(None, (value or "").split(",")):
        name, _, variable = item.partition("=")
        mounts.append((name, variable))
    return tuple(mounts)


# --- reading the values (on the machine running fcgikit) ------------------------------------


def read_values(spec: StackSpec, names: Iterable[str] | None = None,
                environ: Mapping[str, str] | None = None) -> dict[str, bytes]:
    """name -> value of the secrets named (default: every one used by a service)."""
    if environ is None:
        environ = os.environ
    wanted = used_names(spec) if names is None else list(dict.fromkeys(names))
    values = {}
    for name in wanted:
        secret = spec.secrets.get(name)
        if secret is None:
            raise FcgikitError(f'secret "{name}" is not defined under secrets:')
        if secret.from_env is not None:
            if secret.from_env not in environ:
                raise FcgikitError(f"secrets/{name}/from_env: {secret.from_env} is not set in the environment of "
                                   "this machine; nothing changed")
            value = environ[secret.from_env].encode()
        else:
            assert secret.from_file is not None  # Secret allows exactly one of from_env and from_file
            try:
                value = secret.from_file.read_bytes()
            except OSError as exc:
                raise FcgikitError(f"secrets/{name}/from_file: cannot read {secret.from_file}: "
                                   f"{exc.strerror or exc}; nothing changed") from None
        if len(value) > MAX_BYTES:
            raise FcgikitError(f"secrets/{name}: {len(value)} bytes, at most {MAX_BYTES} are delivered")
        values[name] = value
    return values


def used_names(spec: StackSpec) -> list[str]:
    names = list(spec.services.workers.secrets)
    if spec.services.cgi is not None:
        names += spec.services.cgi.secrets
    return list(dict.fromkeys(names))


# --- delivery and checks (commands run with docker exec; pure) --------------------------------

_WRITE = 'umask 077 && printf %s "$FCGIKIT_SECRET" | base64 -d > "$1.tmp" && mv -f "$1.tmp" "$1"'


def delivery_execs(mounts: Sequence[Mount], values: dict[str, bytes]) -> list[tuple[list[str], dict[str, str]]]:
    """(argv, exec environment) for each write: the files, the env list, the ready mark."""
    execs = []
    for name, _ in mounts:
        encoded = base64.b64encode(values[name]).decode()
        execs.append((["sh", "-c", _WRITE, "write", f"{SECRETS_DIR}/{name}"], {"FCGIKIT_SECRET": encoded}))
    listing = "".join(f"{variable} {name}\n" for name, variable in mounts if variable)
    for name, content in ((ENV_LIST, listing), (READY, "")):
        if name == ENV_LIST and not listing:
            continue
        encoded = base64.b64encode(content.encode()).decode()
        execs.append((["sh", "-c", _WRITE, "write", f"{SECRETS_DIR}/{name}"], {"FCGIKIT_SECRET": encoded}))
    return execs


def check_command(mounts: Sequence[Mount]) -> list[str]:
    """Prints the SHA-256 of each delivered file, or fails when the delivery is missing."""
    files = " ".join(shlex.quote(f"{SECRETS_DIR}/{name}") for name, _ in mounts)
    return ["sh", "-c", f"[ -e {SECRETS_DIR}/{READY} ] && sha256sum {files}"]


def delivered_match(output: str, mounts: Sequence[Mount], values: dict[str, bytes]) -> bool:
    """Whether `check_command`'s output shows exactly the values read now."""
    found = {}
    for line in output.splitlines():
        digest, _, path = line.partition("  ")
        found[path.strip()] = digest.strip()
    return all(
        name in values and found.get(f"{SECRETS_DIR}/{name}") == hashlib.sha256(values[name]).hexdigest()
        for name, _ in mounts
    )


# --- never printed ----------------------------------------------------------------------------


class Redactor:
    """Replaces every secret value in text about to be printed with [secret NAME]."""

    MIN_LENGTH = 4  # shorter values would blank out ordinary words

    def __init__(self, values: dict[str, bytes]):
        self.pairs = sorted(
            ((value.decode("utf-8", "replace").strip(), name) for name, value in values.items()),
            key=lambda pair: -len(pair[0]),
        )
        self.pairs = [(text, name) for text, name in self.pairs if len(text) >= self.MIN_LENGTH]

    def __call__(self, text: str) -> str:
        for value, name in self.pairs:
            if value in text:
                text = text.replace(value, f"[secret {name}]")
        return text


def redactor_for(spec: StackSpec) -> Redactor:
    """What can be read now is redacted; a source that cannot be read has nothing to hide."""
    values = {}
    for name in spec.secrets:
        try:
            values.update(read_values(spec, [name]))
        except FcgikitError:
            pass
    return Redactor(values)


# On Swarm the files are there when the task starts (Docker secrets): only the deliver: env
# ones need exporting before the program starts.
EXPORT_SCRIPT = (
    'while [ "$1" != "--" ]; do export "${1%%=*}=$(cat "' + SECRETS_DIR + '/${1#*=}")"; shift; done; '
    'shift; exec "$@"'
)


def export_command(mounts: Sequence[Mount], command: Sequence[str]) -> tuple[str, ...]:
    """`command`, started with the deliver: env secrets exported from their files (Swarm)."""
    exported = [f"{variable}={name}" for name, variable in mounts if variable]
    if not exported:
        return tuple(command)
    return ("sh", "-c", EXPORT_SCRIPT, "fcgikit-secrets", *exported, "--", *command)


def docker_secret_data(spec: StackSpec) -> dict[str, bytes]:
    """For the Swarm engine: the Docker secrets to create (name -> value), each mounted at
    /run/secrets/NAME in the services that name it, as here."""
    return read_values(spec)
