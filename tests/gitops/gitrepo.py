"""Real Git for tests: a bare "origin", a working clone that commits and pushes, and a real
``post-receive`` hook that posts a signed GitHub-format push delivery over HTTP.

Example (in a test)::

    origin = Origin(tmp_path)
    origin.hook(url, secret)                  # then every push posts to url
    sha = origin.commit({"slipstream.yaml": "deployments: {}\\n"}, "empty")
    origin.push()
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

PAYLOADS = Path(__file__).parent / "payloads"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Tess Ter",
    "GIT_AUTHOR_EMAIL": "tess@example.org",
    "GIT_COMMITTER_NAME": "Tess Ter",
    "GIT_COMMITTER_EMAIL": "tess@example.org",
}

HOOK = """#!{python}
# post-receive: one signed GitHub-format push delivery per updated ref, as GitHub sends it.
import hashlib, hmac, json, sys, urllib.error, urllib.request, uuid
URL, SECRET, TEMPLATE, LOG, CLONE = {url!r}, {secret!r}, {template!r}, {log!r}, {clone!r}
for line in sys.stdin:
    old, new, ref = line.split()
    doc = json.load(open(TEMPLATE))
    doc.update(ref=ref, before=old, after=new, created=old == "0" * 40, deleted=new == "0" * 40)
    doc["repository"].update(clone_url=CLONE, full_name="acme/infra", name="infra")
    doc["head_commit"]["id"] = new
    body = json.dumps(doc).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {{
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/044aadd",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "292430182",
        "X-Hub-Signature-256": "sha256=" + signature,
    }}
    request = urllib.request.Request(URL, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, answer = response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        status, answer = err.code, err.read().decode()
    with open(LOG, "a") as log:
        log.write(json.dumps({{"status": status, "answer": answer, "headers": headers,
                               "body": body.decode(), "after": new}}) + "\\n")
    print("delivered", headers["X-GitHub-Delivery"], status)
"""


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


class Origin:
    """A bare repository and a clone that pushes to it."""

    def __init__(self, folder: Path, branch: str = "main") -> None:
        self.bare = folder / "origin.git"
        self.work = folder / "work"
        self.branch = branch
        self.log = folder / "deliveries.jsonl"
        folder.mkdir(parents=True, exist_ok=True)
        git("init", "--bare", "--quiet", f"--initial-branch={branch}", str(self.bare), cwd=folder)
        git("clone", "--quiet", str(self.bare), str(self.work), cwd=folder)
        git("checkout", "--quiet", "-B", branch, cwd=self.work)

    def hook(self, url: str, secret: str) -> None:
        """Install the real post-receive hook posting to ``url``."""
        path = self.bare / "hooks" / "post-receive"
        path.write_text(
            HOOK.format(
                python=sys.executable,
                url=url,
                secret=secret,
                template=str(PAYLOADS / "github-push.json"),
                log=str(self.log),
                clone=str(self.bare),
            )
        )
        path.chmod(0o755)

    def commit(self, files: dict[str, str | None], message: str, branch: str | None = None) -> str:
        """Write (None: delete) files and commit them; returns the commit id."""
        if branch is not None:
            known = git("branch", "--list", branch, cwd=self.work)
            git("checkout", "--quiet", *([branch] if known else ["-b", branch]), cwd=self.work)
        for name, text in files.items():
            path = self.work / name
            if text is None:
                path.unlink()
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        git("add", "-A", cwd=self.work)
        git("commit", "--quiet", "-m", message, cwd=self.work)
        sha = git("rev-parse", "HEAD", cwd=self.work)
        if branch is not None:
            git("checkout", "--quiet", self.branch, cwd=self.work)
        return sha

    def push(self, branch: str | None = None) -> str:
        """Push (the hook runs now); returns git's output, the hook's lines included."""
        done = subprocess.run(
            ["git", "push", "--quiet", "origin", branch or self.branch],
            cwd=self.work,
            capture_output=True,
            text=True,
            env={**os.environ, **GIT_ENV},
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stderr

    def deliveries(self) -> list[dict[str, Any]]:
        """What the hook sent and was answered, oldest first."""
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """POST a delivery; (status, JSON answer)."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, json.loads(raw) if raw.strip().startswith(b"{") else {}


def github_headers(body: bytes, secret: str, delivery: str, event: str = "push") -> dict[str, str]:
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": f"sha256={signature}",
    }


def post_oversized(url: str, size: int, headers: dict[str, str], chunked: bool) -> int:
    """POST ``size`` bytes (with Content-Length, or chunked so only the bytes read can
    tell), keep reading the answer when the server stops reading early; its status."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    head = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}")
    chunk = b"x" * (1024 * 1024)
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        try:
            sent = 0
            while sent < size:
                piece = chunk[: size - sent]
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                sent += len(piece)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered before reading it all, as it should
        answer = b""
        try:
            while b"\r\n" not in answer:
                got = sock.recv(4096)
                if not got:
                    break
                answer += got
        except ConnectionResetError:
            pass
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
