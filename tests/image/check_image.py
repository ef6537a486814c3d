"""`make image-test`: build the image, serve from it, ingest the seeds, ask the H20 question; then the cluster.

1. The base: BASE_IMAGE if set, else python:3.11-slim if a registry gives it, else a Debian bookworm
   base made here with debootstrap (cached: harness.local_debian_base).
2. torch's CPU wheel: TORCH_INDEX_URL if set, else PyTorch's CPU index if it answers, else the
   wheel on this disk served on 127.0.0.1 for the build (harness.local_index).
3. `deploy/build-image.sh` with buildah, timed; the image's size and config are checked (non-root
   user, /data volume, HEALTHCHECK on /readyz) and its file system (no pip, compiler, pip cache,
   source tree, tests or seeds; the prepared model present).
4. `citesearch serve` (the image's CMD) in a container, on a free port of 127.0.0.1, with an API
   key: /readyz polled, the image's HEALTHCHECK command run inside, seeds/ read by the image's own
   reader and posted to /v1/articles (refused without the key), the H20 question asked on
   /v1/search, the top result checked to be the seed passage about backdoors; SIGTERM, exit 0.
5. docker-compose.cluster.yml: `docker-compose config` validates it; a throwaway PostgreSQL 15 is
   started as the postgres service says; replica-a, replica-b and the worker run the image with
   their command and environment from the resolved file. Every service gets a loopback address
   of its own and its service name resolves to it in the containers (as on a compose network):
   the replicas listen on port 8000 and reach postgres:5432 as the file says. CITESEARCH_HOST is
   set to the service's address, as the containers share this machine's network here (0.0.0.0
   would be every interface of the host). A seed written on replica-a is found on replica-b; a
   reindex started on replica-a switches both while the worker waits for batches.
   Not run: nginx (the lb service) and PostgreSQL's own image, which no registry gives here.

Usage: python -m tests.image.check_image [--image TAG] [--no-build] [--no-compose]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tests.image.harness import (
    REPO,
    CheckFailed,
    Container,
    Process,
    buildah,
    check,
    find_torch_wheel,
    free_port,
    image_config,
    index_reachable,
    local_debian_base,
    local_index,
    log,
    poll,
    port_is_free,
    prune_stale_layers,
    registry_base_reachable,
    request,
    run,
)

DEFAULT_BASE = "python:3.11-slim"
DEFAULT_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
TORCH_VERSION = "2.13.0"
BUILD_CACHE_TAG = "localhost/citesearch-build-cache:latest"
QUESTION = "Does NVIDIA's H20 chip have a backdoor?"
SEED_ID = "000_cb51183e942cda20"
READY_DEADLINE_S = 600.0
"""Only bounds a hang: loading the model and compiling its engines on 2 busy cores takes a minute or two."""
PG_BIN_DIRS = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin")
SEED_READER = """
import json, sys
from pathlib import Path
from citesearch.index.sources import iter_sources
items = list(iter_sources([Path(p) for p in sys.argv[1:]]))
bad = [f"{i.origin}: {i.error or i.skipped}" for i in items if i.article is None]
if bad:
    sys.exit("\\n".join(bad))
print(json.dumps([i.article.model_dump(mode="json", exclude_none=True) for i in items]))
"""


# ---- 1-3: build -------------------------------------------------------------------------------


@contextlib.contextmanager
def torch_index() -> Iterator[str | None]:
    """The TORCH_INDEX_URL build argument to pass (None: the Dockerfile's default)."""
    if url := os.environ.get("TORCH_INDEX_URL"):
        yield url
        return
    if index_reachable(f"{DEFAULT_TORCH_INDEX}/torch/"):
        log(f"torch from {DEFAULT_TORCH_INDEX} (the default)")
        yield None
        return
    wheel = find_torch_wheel(TORCH_VERSION)
    if wheel is None:
        raise CheckFailed(
            f"{DEFAULT_TORCH_INDEX} is out of reach and no torch-{TORCH_VERSION}+cpu wheel was found "
            "(set TORCH_INDEX_URL, or TORCH_WHEEL_DIR to a folder holding the wheel)"
        )
    with local_index(wheel) as url:
        log(f"{DEFAULT_TORCH_INDEX} is out of reach: torch from {wheel} served at {url}")
        yield url


def pick_base() -> str | None:
    """The BASE_IMAGE build argument to pass (None: the Dockerfile's default)."""
    if base := os.environ.get("BASE_IMAGE"):
        return base
    if registry_base_reachable(DEFAULT_BASE):
        log(f"base {DEFAULT_BASE} (the default)")
        return None
    return local_debian_base(os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian"))


def build(image: str) -> None:
    """Build the image with deploy/build-image.sh (buildah), timed."""
    base = pick_base()
    with torch_index() as torch_url:
        env = dict(os.environ, IMAGE=image, IMAGE_BUILDER="buildah")
        env.pop("BASE_IMAGE", None)
        env.pop("TORCH_INDEX_URL", None)
        if base is not None:
            env["BASE_IMAGE"] = base
        if torch_url is not None:
            env["TORCH_INDEX_URL"] = torch_url
        started = time.monotonic()
        log(f"building {image}")
        proc = subprocess.run([str(REPO / "deploy" / "build-image.sh")], env=env, check=False)
        if proc.returncode != 0:
            raise CheckFailed(f"the build failed (exit {proc.returncode})")
        log(f"built {image} in {time.monotonic() - started:.0f} s")
        # The build stage, tagged (all its steps come from the cache), so that its last step, which no
        # image builds on, is kept for the next build while older builds' steps are removed.
        env.update(IMAGE=BUILD_CACHE_TAG, IMAGE_TARGET="build")
        run([str(REPO / "deploy" / "build-image.sh")], env=env)
    removed = prune_stale_layers("CITESEARCH_MODELS_DIR")
    log(
        f"build cache: {BUILD_CACHE_TAG} tagged; {len(removed)} stale step image(s) of earlier builds removed"
    )


def check_config(image: str) -> dict[str, Any]:
    """The image's config: non-root user, /data volume, HEALTHCHECK on /readyz, a command."""
    config = image_config(image)
    size = buildah("images", "--format", "{{.Size}}", image).splitlines()[0]
    log(f"image {image}: {size}")
    user = str(config.get("User") or "")
    check(user not in ("", "root", "0") and not user.startswith(("root:", "0:")), f"runs as user {user!r}")
    check("/data" in (config.get("Volumes") or {}), "declares /data a volume")
    test = (config.get("Healthcheck") or {}).get("Test") or []
    check(
        bool(test) and test[0] in ("CMD", "CMD-SHELL") and "/readyz" in " ".join(test),
        "HEALTHCHECK asks /readyz",
    )
    check(bool(config.get("Cmd")), f"command {config.get('Cmd')}")
    return config


def check_contents(image: str) -> None:
    """What the final stage holds: the venv and the prepared model; no build tools, caches or tests."""
    ctr = buildah("from", "--quiet", "--pull-never", image)
    try:
        root = Path(buildah("mount", ctr))
        site = sorted(root.glob("opt/venv/lib/python3*/site-packages"))
        check(len(site) == 1, "one virtual environment at /opt/venv")
        absent = [
            "opt/venv/bin/pip",
            "usr/bin/gcc",
            "usr/bin/cc",
            "usr/bin/make",
            "root/.cache/pip",
            "src",
            "opt/citesearch/seeds",
            "opt/citesearch/tests",
        ]
        present = [p for p in absent if (root / p).exists() or (root / p).is_symlink()]
        present += [str(p.relative_to(root)) for p in site[0].glob("citesearch/tests")]
        present += [str(p.relative_to(root)) for p in site[0].glob("pip")]
        check(not present, f"no pip, compiler, pip cache, source tree, tests or seeds ({present or 'none'})")
        manifests = sorted(root.glob("opt/citesearch/models/*/citesearch-manifest.json"))
        names = [p.parent.name for p in manifests]
        check("multilingual-e5-small" in names, f"prepared models in /opt/citesearch/models: {names}")
        engines = sorted(p.name for p in root.glob("opt/citesearch/models/*/engines/*") if p.name[0] != ".")
        log(f"prepared engines: {engines or 'none'}")
    finally:
        with contextlib.suppress(CheckFailed):
            buildah("umount", ctr)
        buildah("rm", ctr)


# ---- 4: one server ----------------------------------------------------------------------------


def seed_articles(ctr: Container) -> list[dict[str, Any]]:
    """seeds/ as articles, read by the image's own reader (what `citesearch ingest seeds/` reads)."""
    out = ctr.exec(["python", "-c", SEED_READER, "/seeds"], volumes=[f"{REPO / 'seeds'}:/seeds:ro"])
    articles = json.loads(out)
    check(
        isinstance(articles, list) and any(a.get("id") == SEED_ID for a in articles),
        f"seeds/ read: {len(articles)} article(s)",
    )
    return list(articles)


def wait_ready(base: str, proc: Process) -> dict[str, Any]:
    """Poll /readyz until 200; its body."""

    def probe() -> dict[str, Any] | None:
        try:
            status, body = request("GET", f"{base}/readyz", timeout=10)
        except OSError:
            return None
        return body if status == 200 and isinstance(body, dict) else None

    got: dict[str, Any] = poll(f"{proc.name} ready", probe, deadline_s=READY_DEADLINE_S, alive=proc.alive)
    return got


def ask(base: str, key: str | None = None) -> dict[str, Any] | None:
    """The top result for the H20 question, or None when there is none."""
    status, body = request("POST", f"{base}/v1/search", {"query": QUESTION, "top_k": 3}, key=key)
    if status != 200:
        raise CheckFailed(f"POST /v1/search: {status} {body}")
    results = body.get("results") or []
    return dict(results[0]) if results else None


def check_answer(top: dict[str, Any] | None, where: str) -> None:
    """The top result is the seed article's passage saying the chips have no backdoors."""
    if top is None:
        raise CheckFailed(f"{where}: no result for {QUESTION!r}")
    highlight = (top.get("highlight") or {}).get("text") or ""
    log(
        f"{where}: top result {top.get('citation')} {top.get('article_id')} chars {top.get('char_start')}-"
        f"{top.get('char_end')}, highlight: {highlight[:110]}..."
    )
    check(
        top.get("article_id") == SEED_ID
        and top.get("rank") == 1
        and top.get("citation") == "[1]"
        and '"backdoors"' in str(top.get("text"))
        and '"backdoors"' in highlight,
        f"{where}: the top cited passage is {SEED_ID}'s, its highlight the sentence about backdoors",
    )


def check_server_stopped(proc: Process, code: int) -> None:
    """`citesearch serve` shut down completely on SIGTERM.

    uvicorn raises SIGTERM again once its shutdown is complete, so the process ends by that signal,
    which buildah reports as exit status 1 ("subprocess exited on terminated"; docker: 143).
    """
    out = proc.output()
    check(
        "Finished server process" in out and (code == 0 or "subprocess exited on terminated" in out),
        f"{proc.name} shut down completely on SIGTERM (exit status {code})",
    )


def serve_and_ask(image: str, config: Mapping[str, Any], logdir: Path) -> None:
    """`citesearch serve` in a container: ready, healthy, seeds ingested over HTTP, the H20 answer."""
    key = secrets.token_urlsafe(24)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ctr = Container(image, f"citesearch-image-test-{os.getpid()}")
    proc: Process | None = None
    try:
        articles = seed_articles(ctr)
        env = {"CITESEARCH_HOST": "127.0.0.1", "CITESEARCH_PORT": str(port), "CITESEARCH_API_KEY": key}
        cmd = list(config["Cmd"])
        log(f"starting {' '.join(cmd)} in {ctr.name} on {base}")
        proc = ctr.start(cmd, env, logdir)
        ready = wait_ready(base, proc)
        check(ready.get("status") == "ready", f"/readyz: {ready}")
        test = config["Healthcheck"]["Test"]
        health = ["/bin/sh", "-c", test[1]] if test[0] == "CMD-SHELL" else list(test[1:])
        ctr.exec(health, env={"CITESEARCH_PORT": str(port)})
        check(True, "the image's HEALTHCHECK command passes inside the container")
        status, _ = request("POST", f"{base}/v1/articles", {"articles": articles})
        check(status == 401, f"POST /v1/articles without the key: {status}")
        status, body = request("POST", f"{base}/v1/articles", {"articles": articles}, key=key)
        check(status == 200, f"POST /v1/articles with the key: {status} {body}")
        check_answer(ask(base), "serve")
        code = proc.stop()
        log(f"server output (tail):\n{proc.tail(8)}")
        check_server_stopped(proc, code)
    finally:
        if proc is not None:
            proc.stop()
        ctr.remove()
        log(f"container {ctr.name} removed")


# ---- 5: the cluster compose file --------------------------------------------------------------


def compose_command() -> list[str]:
    """`docker compose` (the plugin) or `docker-compose`."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise CheckFailed(
        "neither `docker compose` nor `docker-compose` is here (apt-get install docker-compose)"
    )


def compose_config(env: Mapping[str, str]) -> dict[str, Any]:
    """The compose file validated and resolved by compose itself (all profiles)."""
    import yaml  # type: ignore[import-untyped]

    compose = compose_command()
    file = ["-f", str(REPO / "docker-compose.cluster.yml"), "--profile", "worker"]
    without = {k: v for k, v in env.items() if k != "POSTGRES_PASSWORD"}
    proc = subprocess.run(
        [*compose, *file, "config"], env=without, capture_output=True, text=True, check=False
    )
    check(
        proc.returncode != 0 and "POSTGRES_PASSWORD" in proc.stderr,
        f"{' '.join(compose)} config refuses the file without POSTGRES_PASSWORD",
    )
    resolved = run([*compose, *file, "config"], env=env)
    config = yaml.safe_load(resolved)
    check(isinstance(config, dict), f"{' '.join(compose)} config validates docker-compose.cluster.yml")
    services = config.get("services") or {}
    log(f"services: {', '.join(sorted(services))}")
    return dict(config)


class Postgres:
    """A throwaway PostgreSQL at `host:port` with the compose file's user, password and database."""

    def __init__(self, host: str, port: int, env: Mapping[str, str]) -> None:
        bindir = next((Path(d) for d in PG_BIN_DIRS if (Path(d) / "pg_ctl").exists()), None)
        if bindir is None:
            raise CheckFailed("no PostgreSQL binaries (apt-get install postgresql)")
        self.bindir, self.host, self.port = bindir, host, port
        self.as_root = os.geteuid() == 0
        self.base = Path(tempfile.mkdtemp(prefix="citesearch-image-pg-"))
        self.data = self.base / "data"
        if self.as_root:
            self.base.chmod(0o755)
            shutil.chown(self.base, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--no-sync", "-E", "UTF8")
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(
                f"\nlisten_addresses = '{host}'\nport = {port}\nunix_socket_directories = '{self.base}'\n"
                "fsync = off\npassword_encryption = 'scram-sha-256'\n"
            )
        # The superuser over the local socket (set-up only); everything over TCP needs a password,
        # as in the postgres image.
        (self.data / "pg_hba.conf").write_text(
            "local all postgres trust\nhost all all 0.0.0.0/0 scram-sha-256\n"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.base / "log"), "-w", "-t", "60", "start")
        user, db, password = env["POSTGRES_USER"], env["POSTGRES_DB"], env["POSTGRES_PASSWORD"]
        self.psql(f"CREATE ROLE \"{user}\" LOGIN SUPERUSER PASSWORD '{password}'")
        self.psql(f'CREATE DATABASE "{db}" OWNER "{user}"')

    def _run(self, tool: str, *args: str) -> str:
        cmd = [str(self.bindir / tool), *args]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return run(cmd)

    def psql(self, sql: str) -> str:
        return self._run("psql", "-h", str(self.base), "-p", str(self.port), "-U", "postgres", "-qAtc", sql)

    def healthcheck(self, test: list[str]) -> None:
        """The service's healthcheck (`pg_isready ...`) with this server's address added."""
        argv = test[1:] if test[0] == "CMD" else ["/bin/sh", "-c", test[1]]
        tool = self.bindir / argv[0] if (self.bindir / argv[0]).exists() else Path(argv[0])
        run([str(tool), *argv[1:], "-h", self.host, "-p", str(self.port)])

    def destroy(self) -> None:
        with contextlib.suppress(CheckFailed):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.base, ignore_errors=True)


def loopback_addresses(names: list[str]) -> dict[str, str]:
    """One 127.x.y.z address per service, x and y drawn at random so parallel runs do not meet."""
    x, y = random.randint(64, 250), random.randint(1, 250)
    return {name: f"127.{x}.{y}.{i + 10}" for i, name in enumerate(names)}


def service_env(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's resolved environment as a dict (compose gives a mapping or a list of K=V)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


class Cluster:
    """docker-compose.cluster.yml's services built from the Dockerfile, each in a container of its own."""

    def __init__(self, image: str, image_cmd: list[str], logdir: Path, services: dict[str, Any]) -> None:
        self.image, self.image_cmd, self.logdir, self.services = image, image_cmd, logdir, services
        ours = sorted(n for n, s in services.items() if s.get("image") == "citesearch:latest" or "build" in s)
        check(ours == ["replica-a", "replica-b", "worker"], f"services built from the Dockerfile: {ours}")
        self.addrs = loopback_addresses(["postgres", *ours])
        self.pg_port = 5432
        if not port_is_free(self.addrs["postgres"], self.pg_port):
            self.pg_port = free_port(self.addrs["postgres"])
            log(f"port 5432 is taken on this machine: postgres listens on {self.pg_port}")
        self.containers: list[Container] = []
        self.procs: dict[str, Process] = {}
        self.urls: dict[str, str] = {}

    def start(self, name: str) -> Process:
        """Start a service: its command (else the image's) and environment, as the file resolves them."""
        svc = self.services[name]
        env = service_env(svc)
        if self.pg_port != 5432:
            url = env["CITESEARCH_DATABASE_URL"]
            env["CITESEARCH_DATABASE_URL"] = url.replace("@postgres:5432/", f"@postgres:{self.pg_port}/")
        port = 8000
        if not port_is_free(self.addrs[name], port):
            port = free_port(self.addrs[name])
            log(f"port 8000 is taken on this machine: {name} listens on {port}")
        env.update(CITESEARCH_HOST=self.addrs[name], CITESEARCH_PORT=str(port))
        cmd = list(svc.get("command") or self.image_cmd)
        vols = [
            v.get("target") if isinstance(v, dict) else str(v).split(":")[1] for v in svc.get("volumes") or []
        ]
        where = f"{self.addrs[name]}:{port}"
        log(f"{name}: {' '.join(cmd)} at {where}, volumes {vols or 'none'} (a container of its own)")
        ctr = Container(self.image, f"citesearch-image-test-{os.getpid()}-{name}", self.addrs)
        self.containers.append(ctr)
        self.procs[name] = ctr.start(cmd, env, self.logdir)
        self.urls[name] = f"http://{where}"
        return self.procs[name]

    def replicas_ready(self) -> None:
        """Both replicas start, turn ready and follow the cluster."""
        for name in ("replica-a", "replica-b"):
            self.start(name)
        for name in ("replica-a", "replica-b"):
            proc, url = self.procs[name], self.urls[name]
            ready = wait_ready(url, proc)
            check(ready.get("status") == "ready", f"{name} /readyz: {ready}")
            status, stats = request("GET", f"{url}/v1/stats")
            cluster = stats.get("cluster") if isinstance(stats, dict) else None
            check(status == 200 and cluster is not None, f"{name} follows the cluster: {cluster}")

    def write_a_read_b(self, key: str) -> None:
        """The seeds written on replica-a are found on replica-b."""
        reader = Container(self.image, f"citesearch-image-test-{os.getpid()}-reader")
        try:
            articles = seed_articles(reader)
        finally:
            reader.remove()
        a, b = self.urls["replica-a"], self.urls["replica-b"]
        status, body = request("POST", f"{a}/v1/articles", {"articles": articles}, key=key)
        check(status == 200, f"seeds written on replica-a: {status} {body}")
        top = poll(
            "the seed on replica-b", lambda: ask(b), deadline_s=120, alive=self.procs["replica-b"].alive
        )
        check_answer(top, "replica-b")

    def reindex_with_worker(self, key: str) -> None:
        """The worker starts and waits for batches; a reindex asked of replica-a switches both replicas.

        Which process embeds the batch (a replica or the worker) is a race and is not asserted.
        """
        worker = self.start("worker")
        poll(
            "the worker waiting for batches",
            lambda: True if "waiting for batches" in worker.output() else None,
            deadline_s=READY_DEADLINE_S,
            alive=worker.alive,
        )
        check(True, "the worker started and waits for batches")
        a, b = self.urls["replica-a"], self.urls["replica-b"]
        gen = int(request("GET", f"{b}/v1/stats")[1]["generation"])
        status, job = request("POST", f"{a}/v1/reindex", key=key)
        check(status == 202, f"reindex accepted by replica-a: {status} {job}")

        def switched(url: str) -> int | None:
            got = int(request("GET", f"{url}/v1/stats")[1]["generation"])
            return got if got > gen else None

        for name in ("replica-a", "replica-b"):
            url = self.urls[name]
            new = poll(
                f"{name} on the new generation", lambda u=url: switched(u), deadline_s=600, alive=worker.alive
            )
            check(True, f"{name} serves generation {new} (was {gen})")
        check_answer(ask(b), "replica-b after the reindex")
        code = worker.stop()
        last = worker.output().strip().splitlines()[-1:]
        check(
            code == 0 and "batches embedded" in worker.output(),
            f"the worker stopped on SIGTERM ({code}): {last}",
        )
        for name in ("replica-a", "replica-b"):
            check_server_stopped(self.procs[name], self.procs[name].stop())

    def remove(self) -> None:
        """Stop whatever still runs and remove every container."""
        for name, proc in self.procs.items():
            proc.stop()
            log(f"{name} output (tail):\n{proc.tail(4)}")
        for ctr in self.containers:
            with contextlib.suppress(CheckFailed):
                ctr.remove()


def cluster(image: str, image_cmd: list[str], logdir: Path) -> None:
    """docker-compose.cluster.yml: validated, then its postgres, replicas and worker started here."""
    password = secrets.token_urlsafe(18)
    key = secrets.token_urlsafe(24)
    config = compose_config(dict(os.environ, POSTGRES_PASSWORD=password, CITESEARCH_API_KEY=key))
    services: dict[str, Any] = config["services"]
    group = Cluster(image, image_cmd, logdir, services)
    host, port = group.addrs["postgres"], group.pg_port
    log(f"postgres at {host}:{port} (user, password and database from the compose file)")
    pg = Postgres(host, port, service_env(services["postgres"]))
    try:
        pg.healthcheck(list(services["postgres"]["healthcheck"]["test"]))
        check(True, "the postgres service's healthcheck (pg_isready) passes")
        group.replicas_ready()
        group.write_a_read_b(key)
        group.reindex_with_worker(key)
    finally:
        group.remove()
        pg.destroy()
        log("cluster containers removed, postgres stopped")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=os.environ.get("IMAGE", "citesearch:latest"))
    parser.add_argument("--no-build", action="store_true", help="test the image as it is")
    parser.add_argument("--no-compose", action="store_true", help="skip the compose file's cluster")
    args = parser.parse_args()
    for tool in ("buildah",):
        if shutil.which(tool) is None:
            print(
                f"image-test: {tool} is not installed (apt-get install buildah debootstrap)", file=sys.stderr
            )
            return 2
    logdir = Path(tempfile.mkdtemp(prefix="citesearch-image-test-"))
    try:
        if not args.no_build:
            build(args.image)
        config = check_config(args.image)
        check_contents(args.image)
        serve_and_ask(args.image, config, logdir)
        if not args.no_compose:
            cluster(args.image, list(config["Cmd"]), logdir)
    except CheckFailed as exc:
        log(f"FAILED: {exc}")
        log(f"logs kept in {logdir}")
        return 1
    shutil.rmtree(logdir, ignore_errors=True)
    log("image-test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
