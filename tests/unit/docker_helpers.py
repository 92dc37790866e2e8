"""Docker helpers for tests: the registry's HTTP API (manifests, configs, repositories) and cleanup of
the images a test session labelled."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import urllib.error
import urllib.request

MANIFEST_TYPES = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"


def registry_request(host, path, auth=None, method="GET", accept=None):
    request = urllib.request.Request("http://%s%s" % (host, path), method=method)
    if accept:
        request.add_header("Accept", accept)
    if auth:
        token = base64.b64encode(("%s:%s" % auth).encode()).decode()
        request.add_header("Authorization", "Basic " + token)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers, response.read()


def registry_image(host, ref, auth=None):
    """(manifest digest, config digest, config document) of ``host/repo:tag`` read over the HTTP API."""
    repo_tag = ref[len(host) + 1:]
    repo, _sep, tag = repo_tag.partition(":")
    headers, body = registry_request(host, "/v2/%s/manifests/%s" % (repo, tag or "latest"), auth,
                                     accept=MANIFEST_TYPES)
    manifest = json.loads(body)
    config_digest = manifest["config"]["digest"]
    _headers, config = registry_request(host, "/v2/%s/blobs/%s" % (repo, config_digest), auth)
    return headers["Docker-Content-Digest"], config_digest, json.loads(config)


def repositories(host, auth=None):
    """Every repository of a registry (the catalogue is paginated through its Link header)."""
    found, path = [], "/v2/_catalog?n=1000"
    while path:
        headers, body = registry_request(host, path, auth)
        found.extend(json.loads(body).get("repositories") or [])
        link = headers.get("Link") or ""
        path = link[1:link.index(">")] if link.startswith("<") else None
    return found


def delete_repositories(host, starts_with, auth=None):
    try:
        names = repositories(host, auth)
    except (urllib.error.URLError, OSError):
        return
    for repo in names:
        if not repo.startswith(starts_with):
            continue
        try:
            _h, tags = registry_request(host, "/v2/%s/tags/list" % repo, auth)
            for tag in json.loads(tags).get("tags") or []:
                headers, _b = registry_request(host, "/v2/%s/manifests/%s" % (repo, tag), auth, method="HEAD",
                                               accept=MANIFEST_TYPES)
                registry_request(host, "/v2/%s/manifests/%s" % (repo, headers["Docker-Content-Digest"]), auth,
                                 method="DELETE")
        except (urllib.error.URLError, OSError):
            continue


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def remove_labelled_images(client, label):
    """Remove every image carrying ``label`` (``key=value``) with all its tags, through a docker.APIClient."""
    from docker.errors import APIError

    for image in client.images(filters={"label": label}):
        for tag in image.get("RepoTags") or []:
            if tag != "<none>:<none>":
                try:
                    client.remove_image(tag, force=True)
                except APIError:
                    pass
        try:
            client.remove_image(image["Id"], force=True)
        except APIError:
            pass


def remove_prefixed_images(client, registry, prefix):
    """Remove the images whose names start with ``prefix`` (locally or in ``registry``) and their registry repositories.

    By tag and by digest: an image a rebuild replaced keeps only its registry digest.
    """
    for image in client.images():
        refs = (image.get("RepoTags") or []) + (image.get("RepoDigests") or [])
        if any(ref.startswith(prefix) or ref.startswith("%s/%s" % (registry, prefix)) for ref in refs):
            client.remove_image(image["Id"], force=True)
    delete_repositories(registry, prefix)


@contextlib.contextmanager
def session_api(base_url, registry, prefix):
    """A docker.APIClient for a test session; afterwards every image and repository named ``prefix...`` is removed."""
    import docker

    api = docker.APIClient(base_url=base_url, version="auto", timeout=120)
    try:
        yield api
    finally:
        remove_prefixed_images(api, registry, prefix)
        api.close()
