"""Helpers of `make image-test` (tests/image/check_image.py): logging, HTTP, buildah containers, a base image.

Containers run with `buildah run --isolation chroot`, which needs no daemon (a machine with no
Docker engine, where `podman run` cannot start containers either): the command runs chrooted in the
container's file system, in the host's network namespace, so a server inside is reached on the
host's loopback at the address and port it binds.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
T0 = time.monotonic()


class CheckFailed(Exception):
    """A check of the image did not hold."""


def log(msg: str) -> None:
    """One progress line, with the seconds since the start."""
    print(f"[image-test {time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def check(ok: bool, what: str) -> None:
    """Raise CheckFailed(what) unless ok; log it otherwise."""
    if not ok:
        raise CheckFailed(what)
    log(f"ok: {what}")


def run(cmd: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 600) -> str:
    """Run a command, return its stdout (stripped); CheckFailed with its output if it fails."""
    proc = subprocess.run(
        list(cmd),
        capture_output=True,
        text=True,
        env=dict(env) if env is not None else None,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise CheckFailed(f"{' '.join(cmd[:4])} ... exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return proc.stdout.strip()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at `host` now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """True when `host:port` can be bound now."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


# ---- HTTP -------------------------------------------------------------------------------------


def request(
    method: str, url: str, body: object = None, *, key: str | None = None, timeout: float = 120
) -> tuple[int, Any]:
    """(status, decoded JSON body or text) of one request; connection errors raise OSError."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    if key is not None:
        req.add_header("authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = int(exc.code), exc.read()
    text = raw.decode("utf-8", "replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def poll(what: str, probe: Any, *, deadline_s: float, alive: Any = None, every_s: float = 0.5) -> Any:
    """Call `probe()` until it returns something other than None; return that.

    `alive()` (optional) is checked first each round and its CheckFailed ends the wait at once (a
    server that died). Between rounds the wait is `every_s`; `deadline_s` only bounds a hang.
    """
    end = time.monotonic() + deadline_s
    while True:
        if alive is not None:
            alive()
        got = probe()
        if got is not None:
            return got
        if time.monotonic() > end:
            raise CheckFailed(f"{what}: not within {deadline_s:.0f} s")
        time.sleep(every_s)  # the poll interval, not a synchronisation: the loop waits for the condition


# ---- buildah containers -----------------------------------------------------------------------


def buildah(*args: str, timeout: float = 600) -> str:
    """stdout of one buildah command."""
    return run(["buildah", *args], timeout=timeout)


def image_config(image: str) -> dict[str, Any]:
    """The image's Docker-format config (User, Env, Cmd, Volumes, Healthcheck, ...)."""
    data = json.loads(buildah("inspect", "--type", "image", image))
    config = data.get("Docker", {}).get("config") or data.get("OCIv1", {}).get("config") or {}
    return dict(config)


def image_env(image: str) -> dict[str, str]:
    """The image's environment as a dict."""
    env = image_config(image).get("Env") or []
    return dict(e.split("=", 1) for e in env if "=" in e)


def _children(pid: int) -> list[int]:
    """Direct children of a process (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry))
    return out


class Process:
    """A command running inside a container (`buildah run`), its output going to a log file."""

    def __init__(self, name: str, argv: list[str], logfile: Path) -> None:
        self.name = name
        self.logfile = logfile
        self._fh = logfile.open("wb")
        self.popen = subprocess.Popen(
            argv, stdout=self._fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )

    def output(self) -> str:
        """Everything the process printed so far."""
        return self.logfile.read_text(encoding="utf-8", errors="replace")

    def tail(self, lines: int = 40) -> str:
        """The last lines of its output, indented."""
        return "\n".join("    " + line for line in self.output().splitlines()[-lines:])

    def alive(self) -> None:
        """CheckFailed (with its output) if it has exited."""
        if self.popen.poll() is not None:
            raise CheckFailed(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM to the command inside (buildah itself does not pass signals on), then its exit code.

        Under chroot isolation the command is a process of this machine, the last of
        buildah -> buildah-chroot-runtime -> buildah-chroot-exec -> command.
        """
        if self.popen.poll() is None:
            leaf = self.popen.pid
            while kids := _children(leaf):
                leaf = kids[-1]
            if leaf != self.popen.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(leaf, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name} did not stop within {timeout:.0f} s: killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(leaf, signal.SIGKILL)
                self.popen.wait(timeout=timeout)
        self._fh.close()
        return int(self.popen.returncode)


class Container:
    """A buildah working container of an image; `start` runs a command in it in the background."""

    def __init__(self, image: str, name: str, hosts: Mapping[str, str] | None = None) -> None:
        add_hosts = [f"--add-host={h}:{ip}" for h, ip in (hosts or {}).items()]
        self.name = name
        with contextlib.suppress(CheckFailed):  # a leftover of an interrupted run
            buildah("rm", name)
        self.id = buildah("from", "--quiet", "--pull-never", "--name", name, *add_hosts, image)

    def _argv(self, cmd: Sequence[str], env: Mapping[str, str], volumes: Sequence[str]) -> list[str]:
        argv = ["buildah", "run", "--isolation", "chroot"]
        argv += [f"--env={k}={v}" for k, v in env.items()]
        argv += [f"--volume={v}" for v in volumes]
        return [*argv, self.id, "--", *cmd]

    def start(
        self, cmd: Sequence[str], env: Mapping[str, str], logdir: Path, volumes: Sequence[str] = ()
    ) -> Process:
        """Run `cmd` inside, in the background."""
        return Process(self.name, self._argv(cmd, env, volumes), logdir / f"{self.name}.log")

    def exec(
        self, cmd: Sequence[str], env: Mapping[str, str] | None = None, volumes: Sequence[str] = ()
    ) -> str:
        """Run `cmd` inside to its end; its stdout."""
        return run(self._argv(cmd, env or {}, volumes))

    def remove(self) -> None:
        """Remove the working container (and its writable layer)."""
        buildah("rm", self.id)


def prune_stale_layers(marker: str) -> list[str]:
    """Remove untagged images that no other image builds on and whose history holds `marker`.

    Every build whose code changed leaves the previous build's untagged steps behind (gigabytes:
    the virtual environment and the models); images of other projects are left alone. Removing an
    image can leave its parent the same way, hence the rounds.
    """
    removed: list[str] = []
    while True:
        dangling = buildah("images", "--filter", "dangling=true", "--format", "{{.ID}}").split()
        ours = [
            i for i in dangling if i not in removed and marker in buildah("inspect", "--type", "image", i)
        ]
        if not ours:
            return removed
        for image in ours:
            with contextlib.suppress(CheckFailed):  # in use by a container
                buildah("rmi", image)
            removed.append(image)


# ---- a Debian base image where no registry is reachable ---------------------------------------

BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
BASE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def registry_base_reachable(image: str) -> bool:
    """True when `buildah pull` gets the image (then the build uses it as it is)."""
    try:
        proc = subprocess.run(
            ["buildah", "pull", "--quiet", image], capture_output=True, text=True, timeout=300, check=False
        )
    except subprocess.TimeoutExpired:
        log(f"cannot pull {image}: no answer within 300 s")
        return False
    if proc.returncode != 0:
        log(f"cannot pull {image}: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}")
    return proc.returncode == 0


def cache_dir() -> Path:
    """Where the base's root file system is kept between runs (outside the repository)."""
    root = os.environ.get("CITESEARCH_IMAGE_CACHE") or Path.home() / ".cache" / "citesearch-image"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def local_debian_base(mirror: str) -> str:
    """A python3 image made from Debian's packages with debootstrap (minbase), cached; its tag.

    Cached twice: as the tag in buildah's storage (reused as it is) and as a tarball of the root
    file system in cache_dir() (imported again if the storage was cleared). The key covers the
    suite and the packages, so changing them builds a new base.
    """
    key = hashlib.sha256(f"{BASE_SUITE} {' '.join(BASE_PACKAGES)} {BASE_ENV}".encode()).hexdigest()[:12]
    tag = f"localhost/citesearch-base:{BASE_SUITE}-{key}"
    with contextlib.suppress(CheckFailed):
        buildah("inspect", "--type", "image", tag)
        log(f"base image {tag}: cached in buildah's storage")
        return tag
    tarball = cache_dir() / f"base-{BASE_SUITE}-{key}.tar"
    if not tarball.is_file():
        _debootstrap(tarball, mirror)
    else:
        log(f"base root file system: cached at {tarball}")
    ctr = buildah("from", "--quiet", "scratch")
    try:
        mnt = buildah("mount", ctr)
        run(["tar", "-C", mnt, "--numeric-owner", "-xpf", str(tarball)])
        buildah("umount", ctr)
        config = [f"--env={k}={v}" for k, v in BASE_ENV.items()]
        buildah("config", *config, "--cmd", "/bin/bash", ctr)
        buildah("commit", "--quiet", "--format", "docker", ctr, tag)
    finally:
        buildah("rm", ctr)
    log(f"base image {tag}: imported")
    return tag


def _debootstrap(tarball: Path, mirror: str) -> None:
    """debootstrap --variant=minbase into a temporary folder, trim it, and tar it to `tarball`."""
    if shutil.which("debootstrap") is None:
        raise CheckFailed("no registry base and no debootstrap: apt-get install debootstrap")
    started = time.monotonic()
    log(f"debootstrap {BASE_SUITE} (minbase + {', '.join(BASE_PACKAGES)}) from {mirror}")
    with tempfile.TemporaryDirectory(dir=tarball.parent, prefix=".rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                BASE_SUITE,
                str(root),
                mirror,
            ],
            timeout=1800,
        )
        # What an image needs no copy of: downloaded packages, package lists, documentation.
        for pattern in (
            "var/cache/apt/archives/*.deb",
            "var/cache/apt/*.bin",
            "var/lib/apt/lists/*",
            "usr/share/doc/*",
            "usr/share/man/*",
            "usr/share/info/*",
        ):
            for item in root.glob(pattern):
                if item.is_dir() and not item.is_symlink():
                    shutil.rmtree(item)
                else:
                    item.unlink()
        partial = tarball.with_suffix(".partial")
        run(["tar", "-C", str(root), "--numeric-owner", "-cpf", str(partial), "."])
        partial.replace(tarball)
    log(f"base root file system built in {time.monotonic() - started:.0f} s: {tarball}")


# ---- the CPU torch wheel, served to the build where PyTorch's index is out of reach -----------


def index_reachable(url: str) -> bool:
    """True when `url` answers over HTTP at all."""
    try:
        with urllib.request.urlopen(url, timeout=20):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def find_torch_wheel(version: str) -> Path | None:
    """The CPU wheel of torch `version` for this Python in TORCH_WHEEL_DIR or pip's find-links folders."""
    dirs = [os.environ.get("TORCH_WHEEL_DIR", ""), *os.environ.get("PIP_FIND_LINKS", "").split()]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        got = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60
        )
        for line in got.stdout.splitlines():
            if "find-links" in line:
                dirs += line.split("=", 1)[1].strip("'\" ").split()
    tag = "cp311"  # the Python of both base images the Dockerfile is made for (3.11)
    for d in dirs:
        if d and Path(d).is_dir():
            for wheel in sorted(Path(d).glob(f"torch-{version}+cpu-{tag}-{tag}-*linux*.whl")):
                return wheel
    return None


LOCAL_INDEX_PORT = 38517


@contextlib.contextmanager
def local_index(wheel: Path) -> Iterator[str]:
    """A one-package index (`<url>/torch/` lists the wheel) on 127.0.0.1, for the build's pip."""
    with tempfile.TemporaryDirectory(prefix="citesearch-torch-index-") as tmp:
        pkg = Path(tmp) / "torch"
        pkg.mkdir()
        (pkg / wheel.name).symlink_to(wheel)

        class Quiet(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=tmp, **kwargs)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        # One fixed port when it is free: the URL is a build argument, and a build argument that
        # changes invalidates every cached build step after it.
        port = LOCAL_INDEX_PORT if port_is_free("127.0.0.1", LOCAL_INDEX_PORT) else 0
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Quiet)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/"
        finally:
            server.shutdown()
            server.server_close()
