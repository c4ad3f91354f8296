"""A Hugging Face Hub on 127.0.0.1 for download tests: the endpoints huggingface_hub calls, nothing else.

- `GET /api/models/<repo>[/revision/<rev>]`: the repo's commit and files with sizes (what `model_info` reads).
- `HEAD|GET /<repo>/resolve/<rev>/<file>`: small files answered directly; `*.safetensors` redirected (302) to
  `/cdn/<sha256>` with `X-Linked-Etag`/`X-Linked-Size`, as the real Hub does for LFS files.
- GETs honour `Range: bytes=N-` (206 + Content-Range), so resumed downloads can be checked.
- Faults: a gated repo (its files answer 401 GatedRepo), an unknown repo (404 RepoNotFound), a slow transfer (`bytes_per_s`),
  a connection cut after N bytes the first time a file is fetched (`cut_after={name: N}`), a server that never answers
  the API (`stall_api`) or goes silent after N bytes of a file, every time (`stall_after={name: N}`).
Every request is recorded in `requests` as (method, path, Range header).
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self, repos: dict[str, dict[str, bytes]], *, gated: tuple[str, ...] = (),
                 bytes_per_s: float | None = None, cut_after: dict[str, int] | None = None,
                 stall_api: bool = False, stall_after: dict[str, int] | None = None):
        self.repos, self.gated = repos, set(gated)
        self.bytes_per_s, self.stall_api = bytes_per_s, stall_api
        self.cut_after = {_sha256(self._content(n)): size for n, size in (cut_after or {}).items()}
        self.stall_after = {_sha256(self._content(n)): size for n, size in (stall_after or {}).items()}
        self.requests: list[tuple[str, str, str | None]] = []
        self.closing = threading.Event()
        hub = self

        class Handler(_Handler):
            fake = hub

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()

    def gets(self, name: str) -> list[str | None]:
        """The Range header of every GET that fetched `name`'s bytes (None: from the start)."""
        blob = _sha256(self._content(name))
        return [r for m, p, r in self.requests if m == "GET" and (p.endswith("/" + name) or p == f"/cdn/{blob}")]

    def _content(self, name: str) -> bytes:
        for files in self.repos.values():
            if name in files:
                return files[name]
        raise KeyError(name)


def repo_from_folder(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.0"  # one request per connection: a cut connection is simply closed

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    # -- routing ------------------------------------------------------------------------------------------
    def _serve(self, body: bool) -> None:
        fake = self.fake
        path = unquote(urlsplit(self.path).path)
        fake.requests.append((self.command, path, self.headers.get("Range")))
        try:
            if path.startswith("/api/models/"):
                return self._api(path[len("/api/models/"):])
            if path.startswith("/cdn/"):
                return self._file(self._blob(path[len("/cdn/"):]), body)
            parts = path.strip("/").split("/")
            if len(parts) >= 5 and parts[2] == "resolve":
                repo, name = "/".join(parts[:2]), "/".join(parts[4:])
                if not self._allowed(repo):
                    return
                data = fake.repos[repo].get(name)
                if data is None:
                    return self._error(404, "EntryNotFound", f"{name} not in {repo}")
                headers = {"X-Repo-Commit": COMMIT}
                if name.endswith(".safetensors"):  # LFS: the Hub redirects to its CDN
                    blob = _sha256(data)
                    self.send_response(302)
                    # Another host name for the same server, as the Hub's CDN is: huggingface_hub's HEAD follows
                    # only redirects within the Hub and reads the linked file's size and etag from this answer.
                    cdn = fake.url.replace("127.0.0.1", "localhost")
                    for k, v in {**headers, "Location": f"{cdn}/cdn/{blob}", "X-Linked-Etag": f'"{blob}"',
                                 "X-Linked-Size": str(len(data)), "Content-Length": "0"}.items():
                        self.send_header(k, v)
                    self.end_headers()
                    return
                return self._file(data, body, {**headers, "ETag": f'"{hashlib.sha1(data).hexdigest()}"'})
            self._error(404, "", "no such route")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _allowed(self, repo: str) -> bool:
        if repo in self.fake.gated:
            self._error(401, "GatedRepo", f"Access to model {repo} is restricted. You must have access to it "
                                          "and be authenticated to access it. Please log in.")
            return False
        if repo not in self.fake.repos:
            self._error(404, "RepoNotFound", "Repository not found")
            return False
        return True

    def _api(self, rest: str) -> None:
        if self.fake.stall_api:
            self.fake.closing.wait()  # accept, then never answer
            return
        repo = "/".join(rest.split("/")[:2])
        if repo not in self.fake.repos:
            return self._error(404, "RepoNotFound", "Repository not found")
        files = self.fake.repos[repo]
        # As on the Hub, a gated repo's card and file list are public; its files are not (resolve answers 401).
        gated = "manual" if repo in self.fake.gated else False
        info = {"_id": "fake", "id": repo, "modelId": repo, "sha": COMMIT, "private": False, "gated": gated,
                "disabled": False, "downloads": 0, "likes": 0, "tags": [], "library_name": "transformers",
                "siblings": [{"rfilename": n, "size": len(d), "blobId": hashlib.sha1(d).hexdigest(),
                              **({"lfs": {"sha256": _sha256(d), "size": len(d), "pointerSize": 134}}
                                 if n.endswith(".safetensors") else {})}
                             for n, d in files.items()]}
        payload = json.dumps(info).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _blob(self, sha: str) -> bytes:
        for files in self.fake.repos.values():
            for data in files.values():
                if _sha256(data) == sha:
                    return data
        raise KeyError(sha)

    # -- bytes ----------------------------------------------------------------------------------------------
    def _file(self, data: bytes, body: bool, headers: dict | None = None) -> None:
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[len("bytes="):].split("-")[0] or 0)
        self.send_response(206 if start else 200)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(data) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if not body:
            return
        chunk = data[start:]
        blob = _sha256(data)
        cut = self.fake.cut_after.pop(blob, None)
        if cut is not None:
            chunk = chunk[:cut]
        stall = self.fake.stall_after.get(blob)
        if stall is not None:  # every fetch of this file: some bytes, then silence with the connection open
            self.wfile.write(chunk[:max(0, stall - start)])  # up to byte N of the file, wherever the GET starts
            self.wfile.flush()
            self.fake.closing.wait()
            return
        step = 16384
        for i in range(0, len(chunk), step):
            self.wfile.write(chunk[i:i + step])
            self.wfile.flush()
            if self.fake.bytes_per_s:
                time.sleep(len(chunk[i:i + step]) / self.fake.bytes_per_s)
        if cut is not None:
            self.close_connection = True  # fewer bytes than Content-Length: the client sees a cut transfer

    def _error(self, status: int, code: str, message: str) -> None:
        payload = json.dumps({"error": message}).encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
