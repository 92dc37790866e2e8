# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""The one Docker client wrapper of the collection (Docker SDK for Python, docker>=7.1.0, see :func:`sdk_problem`).

Every module talks to Docker through :class:`DockerClient`; nothing else imports the SDK directly.
The SDK import is guarded so that the module files import without it (ansible-test's import sanity
test); :func:`client_from_module` fails a module with ``missing_required_lib`` when it is absent.

Errors are :class:`DockerError` (a :class:`MadengineError`) carrying one sentence; registry lookups
tell an absent tag (``None``) from an unreachable registry (:class:`RegistryUnreachable`) and from
rejected or missing credentials (:class:`RegistryAuthError`).  No method ever puts a credential in
an exception message.
"""

from __future__ import annotations

import io
import shlex
import tarfile
import time
import traceback

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.docker_args import DEFAULT_DOCKER_HOST
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError

# What pip installs. Older releases work too, with the HTTP libraries they were made for (sdk_problem): Debian 12's
# and Ubuntu 22.04's python3-docker (5.0.3) with the requests and urllib3 those distributions ship.
DOCKER_SDK_MIN_VERSION = (7, 1, 0)
DOCKER_SDK_REQUIREMENT = "docker>=7.1.0"
DOCKER_SDK_FLOOR = (5, 0, 0)

try:
    import docker
    from docker.errors import APIError, DockerException, NotFound
    from docker.utils.build import exclude_paths as _sdk_exclude_paths

    HAS_DOCKER_SDK = True
    DOCKER_SDK_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - exercised by the import sanity test
    HAS_DOCKER_SDK = False
    DOCKER_SDK_IMPORT_ERROR = traceback.format_exc()
    docker = None
    _sdk_exclude_paths = None

    class DockerException(Exception):
        pass

    class APIError(DockerException):
        status_code = None
        explanation = None

    class NotFound(APIError):
        pass

try:
    from requests.exceptions import RequestException
except ImportError:  # pragma: no cover - requests comes with the SDK
    class RequestException(Exception):
        pass

try:
    from urllib3.exceptions import HTTPError as Urllib3Error
except ImportError:  # pragma: no cover - urllib3 comes with the SDK
    class Urllib3Error(Exception):
        pass

# What a streamed response can raise when the connection stalls or drops.
_STREAM_ERRORS = (RequestException, Urllib3Error, OSError)


# Labels every image built by the collection carries.
LABEL_PREFIX = "org.rocm.madengine."
CONTENT_KEY_LABEL = LABEL_PREFIX + "content-key"


class DockerError(MadengineError):
    """A Docker engine operation failed; the message is a full sentence."""


class RegistryUnreachable(DockerError):
    """The engine could not reach the registry (connection refused, DNS, TLS ...)."""


class RegistryAuthError(DockerError):
    """The registry refused the request: credentials missing or rejected."""


class BuildFailed(DockerError):
    """``docker build`` failed; ``log`` holds the (already scrubbed) output."""

    def __init__(self, message, log="", timed_out=False):
        super(BuildFailed, self).__init__(message)
        self.log = log
        self.timed_out = timed_out


def version_tuple(text):
    """``(7, 1, 0)`` from ``"7.1.0"``, ``"5.0.3"`` from ``"5.0.3-2"`` and the like."""
    parts = []
    for piece in str(text).split(".")[:3]:
        digits = ""
        for char in piece:
            if not char.isdigit():
                break
            digits += char
        parts.append(int(digits or 0))
    return tuple(parts + [0] * (3 - len(parts)))


def sdk_problem(docker_version, requests_version, urllib3_version):
    """Why this Docker SDK cannot drive an engine with the requests and urllib3 beside it; None when it can.

    docker 7.1.0 and later work with any of them. Older releases break on newer HTTP libraries: requests 2.32
    refuses their ``http+docker`` URLs (fixed in 7.1.0); requests 2.29 (chunked uploads, which put_archive
    sends) and urllib3 2 call connection methods they lack (fixed in 6.1.0).
    """
    sdk, requests_, urllib3_ = (version_tuple(v) for v in (docker_version, requests_version, urllib3_version))
    if sdk >= DOCKER_SDK_MIN_VERSION:
        return None
    if sdk < DOCKER_SDK_FLOOR:
        return "the Docker SDK for Python %s is too old; %s is required" % (docker_version, DOCKER_SDK_REQUIREMENT)
    clashes = []
    if requests_ >= (2, 32, 0):
        clashes.append("requests %s (2.32 or later)" % requests_version)
    elif sdk < (6, 1, 0) and requests_ >= (2, 29, 0):
        clashes.append("requests %s (2.29 or later)" % requests_version)
    if sdk < (6, 1, 0) and urllib3_ >= (2, 0, 0):
        clashes.append("urllib3 %s (2.0 or later)" % urllib3_version)
    if not clashes:
        return None
    return "the Docker SDK for Python %s does not work with %s beside it; %s does" % (
        docker_version, " and ".join(clashes), DOCKER_SDK_REQUIREMENT)


def installed_sdk_problem():
    """:func:`sdk_problem` for the SDK this Python imports (the SDK must be importable)."""
    import requests
    import urllib3

    return sdk_problem(docker.__version__, requests.__version__, urllib3.__version__)


def scrub(text, secrets):
    """``text`` with every secret value replaced by ``********``."""
    if not text or not secrets:
        return text
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "********")
    return text


def _error_text(exc):
    """The engine's explanation of an API error, else the exception text."""
    explanation = getattr(exc, "explanation", None)
    if explanation:
        text = explanation.decode("utf-8", "replace") if isinstance(explanation, bytes) else str(explanation)
    else:
        text = str(exc)
    return text.strip().rstrip(".")


_AUTH_MARKERS = ("unauthorized", "authentication required", "no basic auth credentials", "401",
                 "denied", "incorrect username or password")


def _looks_like_auth_error(exc, text):
    status = getattr(exc, "status_code", None)
    lowered = text.lower()
    return status in (401, 403) or any(marker in lowered for marker in _AUTH_MARKERS)


def split_reference(ref):
    """``host:5000/repo/name:tag`` -> (``host:5000/repo/name``, ``tag``); digests and missing tags too."""
    if "@" in ref:
        repo, digest = ref.split("@", 1)
        return repo, digest
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = ref.rsplit(":", 1)
        return repo, tag
    return ref, "latest"


def registry_host(ref):
    """The registry part of an image reference (``docker.io`` when it names none)."""
    first = ref.split("/", 1)[0]
    if "/" in ref and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


MASK = "********"


class WaitTimeout(DockerError):
    """A container did not stop within the time it was given."""


class ContainerSpec(object):
    """One container to run: everything ``docker run`` would be given, in Engine API terms.

    :meth:`as_dict` and :meth:`docker_run` show it with secret values masked (check mode and results).
    """

    def __init__(self, name, image, command, working_dir=None, environment=None, labels=None, image_ref=None):
        self.name = name
        self.image = image                  # what the engine runs: an image id or reference
        self.image_ref = image_ref or image  # what a reader should see (registry reference)
        self.command = list(command)
        self.working_dir = working_dir
        self.environment = dict(environment or {})
        self.labels = dict(labels or {})
        self.user = None
        self.devices = []           # "host path:container path:rwm"
        self.device_requests = []   # {"driver", "device_ids", "capabilities"}
        self.group_add = []
        self.binds = []             # "host path:container path:ro|rw"
        self.cap_add = []
        self.cap_drop = []
        self.security_opt = []
        self.ipc_mode = None
        self.network_mode = None
        self.cpuset_cpus = None
        self.shm_size = None
        self.mem_limit = None
        self.ulimits = []           # {"name", "soft", "hard"}
        self.privileged = False
        self.tmpfs = {}

    def masked_environment(self, secret_names=(), secrets=()):
        return dict((k, MASK if k in secret_names else scrub(str(v), secrets)) for k, v in self.environment.items())

    def as_dict(self, secret_names=(), secrets=()):
        spec = {
            "name": self.name,
            "image": self.image_ref,
            "image_id": self.image if self.image != self.image_ref else None,
            "command": [scrub(c, secrets) for c in self.command],
            "working_dir": self.working_dir,
            "user": self.user,
            "environment": self.masked_environment(secret_names, secrets),
            "devices": list(self.devices),
            "device_requests": [dict(r) for r in self.device_requests],
            "group_add": list(self.group_add),
            "binds": list(self.binds),
            "cap_add": list(self.cap_add),
            "cap_drop": list(self.cap_drop),
            "security_opt": list(self.security_opt),
            "ipc_mode": self.ipc_mode,
            "network_mode": self.network_mode,
            "cpuset_cpus": self.cpuset_cpus,
            "shm_size": self.shm_size,
            "mem_limit": self.mem_limit,
            "ulimits": [dict(u) for u in self.ulimits],
            "privileged": self.privileged,
            "tmpfs": dict(self.tmpfs),
            "labels": dict(self.labels),
        }
        spec["docker_run"] = self.docker_run(secret_names, secrets)
        return spec

    def docker_run(self, secret_names=(), secrets=()):
        """The equivalent ``docker run`` command line (secrets masked)."""
        words = ["docker", "run", "--name", self.name]
        if self.network_mode:
            words += ["--network", self.network_mode]
        if self.ipc_mode:
            words += ["--ipc", self.ipc_mode]
        if self.user:
            words += ["-u", self.user]
        if self.privileged:
            words.append("--privileged")
        words += ["--cap-add=%s" % c for c in self.cap_add] + ["--cap-drop=%s" % c for c in self.cap_drop]
        words += ["--security-opt=%s" % o for o in self.security_opt]
        words += ["--group-add=%s" % g for g in self.group_add]
        words += ["--device=%s" % d for d in self.devices]
        for request in self.device_requests:
            ids = request.get("device_ids") or []
            words.append("--gpus=%s" % ('"device=%s"' % ",".join(ids) if ids else "all"))
        if self.cpuset_cpus:
            words.append("--cpuset-cpus=%s" % self.cpuset_cpus)
        if self.shm_size:
            words.append("--shm-size=%s" % self.shm_size)
        if self.mem_limit:
            words.append("--memory=%s" % self.mem_limit)
        words += ["--ulimit=%s=%s:%s" % (u["name"], u["soft"], u["hard"]) for u in self.ulimits]
        words += ["--tmpfs=%s%s" % (p, (":" + o) if o else "") for p, o in sorted(self.tmpfs.items())]
        for key, value in sorted(self.masked_environment(secret_names, secrets).items()):
            words += ["-e", "%s=%s" % (key, value)]
        words += ["-v=%s" % b for b in self.binds]
        for key, value in sorted(self.labels.items()):
            words.append("--label=%s=%s" % (key, value))
        if self.working_dir:
            words += ["-w", self.working_dir]
        words.append(self.image_ref)
        words += [scrub(c, secrets) for c in self.command]
        return " ".join(shlex.quote(w) for w in words)


def _ulimit(value):
    name, _sep, limits = value.partition("=")
    soft, _sep, hard = limits.partition(":")
    try:
        return {"name": name, "soft": int(soft), "hard": int(hard or soft)}
    except ValueError:
        raise ValueError("--ulimit %s is not NAME=SOFT[:HARD] with numbers" % value)


def _env_pair(value):
    key, sep, rest = value.partition("=")
    if not sep:
        raise ValueError("-e %s is not KEY=VALUE" % value)
    return key, rest


# docker run options that additional_docker_run_options may hold: name -> (takes a value, apply)
_RUN_OPTIONS = {
    "--cap-add": (True, lambda s, v: s.cap_add.append(v)),
    "--cap-drop": (True, lambda s, v: s.cap_drop.append(v)),
    "--device": (True, lambda s, v: s.devices.append(v if v.count(":") >= 1 else "%s:%s:rwm" % (v, v))),
    "--security-opt": (True, lambda s, v: s.security_opt.append(v)),
    "--group-add": (True, lambda s, v: s.group_add.append(v)),
    "--shm-size": (True, lambda s, v: setattr(s, "shm_size", v)),
    "--ipc": (True, lambda s, v: setattr(s, "ipc_mode", v)),
    "--network": (True, lambda s, v: setattr(s, "network_mode", v)),
    "--net": (True, lambda s, v: setattr(s, "network_mode", v)),
    "--cpuset-cpus": (True, lambda s, v: setattr(s, "cpuset_cpus", v)),
    "--memory": (True, lambda s, v: setattr(s, "mem_limit", v)),
    "-m": (True, lambda s, v: setattr(s, "mem_limit", v)),
    "--user": (True, lambda s, v: setattr(s, "user", v)),
    "-u": (True, lambda s, v: setattr(s, "user", v)),
    "--workdir": (True, lambda s, v: setattr(s, "working_dir", v)),
    "-w": (True, lambda s, v: setattr(s, "working_dir", v)),
    "--env": (True, lambda s, v: s.environment.__setitem__(*_env_pair(v))),
    "-e": (True, lambda s, v: s.environment.__setitem__(*_env_pair(v))),
    "--volume": (True, lambda s, v: s.binds.append(v)),
    "-v": (True, lambda s, v: s.binds.append(v)),
    "--ulimit": (True, lambda s, v: s.ulimits.append(_ulimit(v))),
    "--tmpfs": (True, lambda s, v: s.tmpfs.__setitem__(v.split(":", 1)[0], v.split(":", 1)[1] if ":" in v else "")),
    "--privileged": (False, lambda s, v: setattr(s, "privileged", True)),
}
RUN_OPTION_NAMES = tuple(sorted(_RUN_OPTIONS))


def apply_run_options(spec, text):
    """Apply a ``docker run`` option string (madengine's ``additional_docker_run_options``) to ``spec``.

    Raises ValueError naming the first option that is not supported or lacks its value.
    """
    try:
        words = shlex.split(text or "")
    except ValueError as exc:
        raise ValueError("cannot split %r into words: %s" % (text, exc))
    index = 0
    while index < len(words):
        word = words[index]
        name, sep, value = word.partition("=") if word.startswith("--") else (word, "", "")
        if name not in _RUN_OPTIONS and len(word) > 2 and word[:2] in _RUN_OPTIONS and not word.startswith("--"):
            name, sep, value = word[:2], "=", word[2:]  # -eKEY=VALUE
        if name not in _RUN_OPTIONS:
            raise ValueError("option %s is not supported (supported: %s)" % (word, " ".join(RUN_OPTION_NAMES)))
        takes_value, apply = _RUN_OPTIONS[name]
        if takes_value and not sep:
            index += 1
            if index >= len(words):
                raise ValueError("option %s needs a value" % name)
            value = words[index]
        apply(spec, value)
        index += 1
    return spec


class DockerClient(object):
    """A small, class-based API over the Docker SDK's low-level client.

    Build, tag, push, inspect and registry lookups for madengine_build; pulls, containers (create,
    start, wait, kill, remove), their output and files for madengine_run.
    """

    def __init__(self, docker_host=DEFAULT_DOCKER_HOST, timeout=60, api_version="auto", tls=False,
                 tls_verify=False, ca_path=None, client_cert=None, client_key=None):
        if not HAS_DOCKER_SDK:
            raise DockerError("The Docker SDK for Python (%s) is not installed." % DOCKER_SDK_REQUIREMENT)
        self.docker_host = docker_host or DEFAULT_DOCKER_HOST
        self._options = dict(base_url=self.docker_host, version=api_version or "auto", timeout=timeout)
        if tls or tls_verify:
            client_pair = (client_cert, client_key) if client_cert or client_key else None
            try:
                self._options["tls"] = docker.tls.TLSConfig(client_cert=client_pair, ca_cert=ca_path,
                                                            verify=ca_path if tls_verify and ca_path else tls_verify)
            except DockerException as exc:
                raise DockerError("The TLS options for the Docker engine at %s are invalid: %s."
                                  % (self.docker_host, _error_text(exc)))
        self.api = self._connect()

    @classmethod
    def from_params(cls, params):
        """A client from the DOCKER_COMMON_ARGS options of a module."""
        return cls(docker_host=params.get("docker_host"), timeout=params.get("docker_timeout") or 60,
                   api_version=params.get("docker_api_version"), tls=params.get("docker_tls"),
                   tls_verify=params.get("docker_tls_verify"), ca_path=params.get("docker_ca_path"),
                   client_cert=params.get("docker_client_cert"), client_key=params.get("docker_client_key"))

    def _connect(self):
        try:
            return docker.APIClient(**self._options)
        except (DockerException, RequestException) as exc:
            raise DockerError("The Docker engine at %s is unreachable: %s." % (self.docker_host, _error_text(exc)))

    def close(self):
        try:
            self.api.close()
        except Exception:  # pylint: disable=broad-except
            pass

    # ---- images -----------------------------------------------------------------------------

    def image(self, ref):
        """``docker image inspect`` of ``ref`` as a dict, or None when the engine has no such image."""
        try:
            return self.api.inspect_image(ref)
        except NotFound:
            return None
        except (APIError, RequestException) as exc:
            raise DockerError("Cannot inspect image %s on the Docker engine at %s: %s."
                              % (ref, self.docker_host, _error_text(exc)))

    def tag(self, image, ref):
        repository, tag = split_reference(ref)
        try:
            self.api.tag(image, repository, tag, force=True)
        except (APIError, RequestException) as exc:
            raise DockerError("Cannot tag image %s as %s: %s." % (image, ref, _error_text(exc)))

    def remove_image(self, ref, force=False):
        """Remove an image; returns False when it was already absent."""
        try:
            self.api.remove_image(ref, force=force)
            return True
        except NotFound:
            return False
        except (APIError, RequestException) as exc:
            raise DockerError("Cannot remove image %s: %s." % (ref, _error_text(exc)))

    def images(self, label=None):
        """Image summaries, optionally only those carrying ``label`` (``key`` or ``key=value``)."""
        filters = {"label": [label]} if label else None
        try:
            return self.api.images(filters=filters)
        except (APIError, RequestException) as exc:
            raise DockerError("Cannot list images on the Docker engine at %s: %s."
                              % (self.docker_host, _error_text(exc)))

    def build(self, fileobj, tag, dockerfile, buildargs=None, labels=None, pull=True, nocache=False,
              network_mode="host", timeout=0, secrets=(), on_line=None):
        """Build from an uncompressed tar context; returns ``(image_id, log_text)``.

        ``timeout`` (seconds, 0 = none) bounds the whole build: on expiry the connection is closed,
        which makes the engine cancel the build.  ``secrets`` are scrubbed from the log and from
        error messages.  Raises :class:`BuildFailed` with the log.
        """
        lines = []
        image_id = None
        error = None
        started = time.monotonic()
        deadline = started + timeout if timeout else None

        def note(text):
            text = scrub(text, secrets)
            lines.append(text)
            if on_line is not None:
                on_line(text)

        try:
            stream = self.api.build(
                fileobj=fileobj, custom_context=True, tag=tag, dockerfile=dockerfile, buildargs=buildargs or {},
                labels=labels or {}, pull=pull, nocache=nocache, rm=True, forcerm=True, network_mode=network_mode,
                decode=True, timeout=timeout or None)
            for chunk in stream:
                if "stream" in chunk:
                    note(chunk["stream"])
                elif "status" in chunk:
                    note("%s%s\n" % (chunk["status"], (" " + chunk["id"]) if chunk.get("id") else ""))
                if "aux" in chunk and isinstance(chunk["aux"], dict) and chunk["aux"].get("ID"):
                    image_id = chunk["aux"]["ID"]
                if "error" in chunk:
                    error = scrub(str(chunk.get("error") or "").strip(), secrets)
                    note("ERROR: %s\n" % error)
                if deadline is not None and time.monotonic() > deadline:
                    raise _BuildTimeout()
        except (_BuildTimeout,) + _STREAM_ERRORS as exc:
            if deadline is not None and (isinstance(exc, _BuildTimeout) or time.monotonic() >= deadline - 0.5):
                self._abort()
                note("ERROR: build timed out after %d s\n" % timeout)
                raise BuildFailed("the build timed out after %d s" % timeout, "".join(lines), timed_out=True)
            self._abort()
            raise BuildFailed("the connection to the Docker engine at %s failed during the build: %s"
                              % (self.docker_host, scrub(_error_text(exc), secrets)), "".join(lines))
        except (APIError, DockerException) as exc:
            raise BuildFailed("the Docker engine rejected the build: %s" % scrub(_error_text(exc), secrets),
                              "".join(lines))
        log = "".join(lines)
        if error:
            raise BuildFailed(error.splitlines()[-1] if error else "the build failed", log)
        if not image_id:
            raise BuildFailed("the Docker engine reported no image id", log)
        return image_id, log

    def _abort(self):
        """Drop every connection (cancels a running build) and reconnect."""
        self.close()
        self.api = self._connect()

    # ---- registries -------------------------------------------------------------------------

    def login(self, registry, username, password):
        """Check credentials against ``registry`` through the engine (nothing is written to disk)."""
        try:
            self.api.login(username=username, password=password, registry=registry, reauth=True)
        except (APIError, RequestException, DockerException) as exc:
            text = scrub(_error_text(exc), [password])
            if _looks_like_auth_error(exc, text):
                raise RegistryAuthError("Registry %s rejected the credentials of user '%s': %s."
                                        % (registry, username, text))
            raise RegistryUnreachable("Registry %s is unreachable from the Docker engine at %s: %s."
                                      % (registry, self.docker_host, text))

    def registry_digest(self, ref, auth=None):
        """The manifest digest ``ref`` has in its registry, or None when the registry has no such tag.

        Raises RegistryUnreachable or RegistryAuthError (messages name the registry).
        """
        secrets = [auth.get("password")] if auth else []
        try:
            data = self.api.inspect_distribution(ref, auth_config=auth)
        except NotFound:
            return None
        except (APIError, RequestException, DockerException) as exc:
            text = scrub(_error_text(exc), secrets)
            host = registry_host(ref)
            if _looks_like_auth_error(exc, text):
                raise RegistryAuthError("Registry %s refused access to %s: %s." % (host, ref, text))
            if "manifest unknown" in text.lower() or "not found" in text.lower():
                return None
            raise RegistryUnreachable("Registry %s is unreachable from the Docker engine at %s: %s."
                                      % (host, self.docker_host, text))
        return (data.get("Descriptor") or {}).get("digest")

    def push(self, ref, auth=None):
        """Push ``ref``; returns the manifest digest the registry stored."""
        repository, tag = split_reference(ref)
        secrets = [auth.get("password")] if auth else []
        digest = None
        try:
            for chunk in self.api.push(repository, tag, stream=True, decode=True, auth_config=auth):
                if "error" in chunk:
                    text = scrub(str(chunk.get("error") or "").strip(), secrets)
                    if _looks_like_auth_error(None, text):
                        raise RegistryAuthError("Registry %s refused the push of %s: %s."
                                                % (registry_host(ref), ref, text))
                    raise DockerError("Pushing %s failed: %s." % (ref, text))
                aux = chunk.get("aux")
                if isinstance(aux, dict) and aux.get("Digest"):
                    digest = aux["Digest"]
        except (APIError, RequestException, DockerException) as exc:
            raise DockerError("Pushing %s failed: %s." % (ref, scrub(_error_text(exc), secrets)))
        if not digest:
            raise DockerError("Pushing %s failed: the engine reported no digest." % ref)
        return digest

    # ---- events -----------------------------------------------------------------------------

    def events(self, since, until, filters=None):
        """Engine events between two UNIX times (seconds, floats allowed), as dicts."""
        try:
            return list(self.api.events(since=since, until=until, filters=filters, decode=True))
        except (APIError, RequestException) as exc:
            raise DockerError("Cannot read events of the Docker engine at %s: %s."
                              % (self.docker_host, _error_text(exc)))

    # ---- pulls and containers ---------------------------------------------------------------

    def pull(self, ref, auth=None):
        """Pull ``ref`` (``repo:tag`` or ``repo@sha256:…``) and return its inspect dict."""
        repository, tag = split_reference(ref)
        secrets = [auth.get("password")] if auth else []
        host = registry_host(ref)
        try:
            for chunk in self.api.pull(repository, tag=tag, stream=True, decode=True, auth_config=auth):
                if isinstance(chunk, dict) and chunk.get("error"):
                    raise _PullError(str(chunk.get("error")))
        except (_PullError, APIError, RequestException, DockerException) as exc:
            text = scrub(_error_text(exc), secrets)
            lowered = text.lower()
            if _looks_like_auth_error(exc, text):
                raise RegistryAuthError("Registry %s refused the pull of %s: %s." % (host, ref, text))
            if any(m in lowered for m in ("connection refused", "no such host", "dial tcp", "i/o timeout",
                                          "server gave http response", "tls:")):
                raise RegistryUnreachable("Registry %s is unreachable from the Docker engine at %s: %s."
                                          % (host, self.docker_host, text))
            raise DockerError("Pulling %s failed: %s." % (ref, text))
        image = self.image(ref)
        if image is None:
            raise DockerError("Pulling %s reported success, but the engine has no such image." % ref)
        return image

    def create_container(self, spec):
        """Create (not start) the container of a ContainerSpec; returns its id."""
        try:
            device_requests = [docker.types.DeviceRequest(**r) for r in spec.device_requests]
            ulimits = [docker.types.Ulimit(**u) for u in spec.ulimits]
            host_config = self.api.create_host_config(
                devices=spec.devices or None, device_requests=device_requests or None,
                group_add=spec.group_add or None, binds=spec.binds or None, cap_add=spec.cap_add or None,
                cap_drop=spec.cap_drop or None, security_opt=spec.security_opt or None, ipc_mode=spec.ipc_mode,
                network_mode=spec.network_mode, cpuset_cpus=spec.cpuset_cpus, shm_size=spec.shm_size,
                mem_limit=spec.mem_limit, ulimits=ulimits or None, privileged=spec.privileged,
                tmpfs=spec.tmpfs or None)
            created = self.api.create_container(
                spec.image, command=spec.command, name=spec.name, user=spec.user, working_dir=spec.working_dir,
                environment=spec.environment, labels=spec.labels, host_config=host_config, detach=True, tty=False)
        except (APIError, RequestException, DockerException) as exc:
            raise DockerError("Creating container %s from %s failed: %s."
                              % (spec.name, spec.image_ref, _error_text(exc)))
        return created["Id"]

    def put_archive(self, container, path, data):
        try:
            self.api.put_archive(container, path, data)
        except (APIError, RequestException) as exc:
            raise DockerError("Copying files into container %s failed: %s." % (container[:12], _error_text(exc)))

    def start(self, container):
        try:
            self.api.start(container)
        except (APIError, RequestException) as exc:
            raise DockerError("Starting container %s failed: %s." % (container[:12], _error_text(exc)))

    def wait(self, container, timeout=None):
        """The exit code of ``container`` once it stops; WaitTimeout after ``timeout`` seconds."""
        started = time.monotonic()
        try:
            result = self.api.wait(container, timeout=timeout or None)
        except (RequestException, Urllib3Error, OSError) as exc:
            if timeout and time.monotonic() - started >= timeout * 0.99:
                raise WaitTimeout("Container %s still ran after %s s." % (container[:12], timeout))
            raise DockerError("Waiting for container %s failed: %s." % (container[:12], _error_text(exc)))
        except APIError as exc:
            raise DockerError("Waiting for container %s failed: %s." % (container[:12], _error_text(exc)))
        error = (result.get("Error") or {}).get("Message") if isinstance(result.get("Error"), dict) else None
        if error:
            raise DockerError("Container %s failed: %s." % (container[:12], error))
        return result.get("StatusCode")

    def kill(self, container):
        """SIGKILL ``container``; a container that already stopped is fine."""
        try:
            self.api.kill(container)
        except NotFound:
            pass
        except APIError as exc:
            if "is not running" not in _error_text(exc):
                raise DockerError("Killing container %s failed: %s." % (container[:12], _error_text(exc)))

    def remove_container(self, container):
        """Force-remove ``container`` (and its anonymous volumes); False when it was already gone."""
        try:
            self.api.remove_container(container, force=True, v=True)
            return True
        except NotFound:
            return False
        except (APIError, RequestException) as exc:
            if "already in progress" in _error_text(exc):
                return True
            raise DockerError("Removing container %s failed: %s." % (container[:12], _error_text(exc)))

    def log_stream(self, container):
        """The container's stdout and stderr as byte chunks, from its start until it stops."""
        return self.api.logs(container, stdout=True, stderr=True, stream=True, follow=True)

    def read_file(self, container, path, limit=64 << 20):
        """The bytes of one regular file of a (possibly stopped) container, or None when it has none."""
        try:
            stream, _stat = self.api.get_archive(container, path)
            buffer = io.BytesIO()
            for chunk in stream:
                buffer.write(chunk)
                if buffer.tell() > limit + (1 << 20):
                    raise DockerError("File %s of container %s is larger than %d bytes."
                                      % (path, container[:12], limit))
        except NotFound:
            return None
        except (APIError, RequestException) as exc:
            raise DockerError("Reading %s from container %s failed: %s." % (path, container[:12], _error_text(exc)))
        buffer.seek(0)
        with tarfile.open(fileobj=buffer, mode="r") as tar:
            for member in tar:
                if member.isreg():
                    handle = tar.extractfile(member)
                    return handle.read() if handle is not None else None
        return None

    def running(self, container):
        """True while ``container`` runs (False when it stopped or is gone)."""
        try:
            return bool(((self.api.inspect_container(container) or {}).get("State") or {}).get("Running"))
        except NotFound:
            return False
        except (APIError, RequestException) as exc:
            raise DockerError("Inspecting container %s failed: %s." % (container[:12], _error_text(exc)))

    def copy_from(self, container, path, fileobj, limit=4 << 30):
        """Write the tar of ``path`` in a (possibly stopped) container to ``fileobj``; False when it is not there."""
        try:
            stream, _stat = self.api.get_archive(container, path)
            written = 0
            for chunk in stream:
                written += len(chunk)
                if written > limit:
                    raise DockerError("%s of container %s holds more than %d bytes." % (path, container[:12], limit))
                fileobj.write(chunk)
        except NotFound:
            return False
        except (APIError, RequestException) as exc:
            raise DockerError("Reading %s from container %s failed: %s." % (path, container[:12], _error_text(exc)))
        return True

    def containers(self, label):
        """Summaries of every container (running or not) carrying ``label``."""
        try:
            return self.api.containers(all=True, filters={"label": [label]})
        except (APIError, RequestException) as exc:
            raise DockerError("Cannot list containers on the Docker engine at %s: %s."
                              % (self.docker_host, _error_text(exc)))


class _BuildTimeout(Exception):
    pass


class _PullError(Exception):
    pass


def dockerignore_included(root, patterns):
    """Paths (files and directories, relative to ``root``) that ``.dockerignore`` ``patterns`` keep."""
    if not HAS_DOCKER_SDK:
        raise DockerError("The Docker SDK for Python (%s) is needed to apply .dockerignore files."
                          % DOCKER_SDK_REQUIREMENT)
    # exclude_paths() appends an exception for the Dockerfile to the list it is given: pass a copy
    # and a name no context holds.
    return _sdk_exclude_paths(root, list(patterns), dockerfile=".madengine-build/Dockerfile")


def client_from_module(module):
    """A DockerClient for an AnsibleModule, or fail_json with a precise reason."""
    if not HAS_DOCKER_SDK:
        module.fail_json(msg=missing_required_lib(DOCKER_SDK_REQUIREMENT), exception=DOCKER_SDK_IMPORT_ERROR)
    problem = installed_sdk_problem()
    if problem:
        module.fail_json(msg=problem[0].upper() + problem[1:] + ".")
    try:
        return DockerClient.from_params(module.params)
    except DockerError as exc:
        module.fail_json(msg=str(exc))
