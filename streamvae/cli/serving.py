"""Commands that put a model to work: ``promote`` (move an alias), ``serve``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from streamvae.cli.common import (
    ConfigOpt,
    JsonOpt,
    SetOpt,
    TrackingOpt,
    WorkDirOpt,
    app,
    console,
    emit,
    err_console,
    fail,
    guard,
    need_uri,
    setup_logging,
    tracking_settings,
)
from streamvae.config import ServeSettings, load_settings


@app.command()
def promote(
    model_uri: Annotated[
        str, typer.Argument(help="The registered version: models:/NAME/VERSION (or @ALIAS).")
    ],
    alias: Annotated[str, typer.Option(help="Alias to point at it.")] = "champion",
    tracking_uri: TrackingOpt = None,
    work_dir: WorkDirOpt = Path(".streamvae"),
    as_json: JsonOpt = False,
) -> None:
    """Point a registry alias (champion by default) at a calibrated model version.

    Example: streamvae promote models:/streamvae-tabular/3 --alias champion
    """
    need_uri(model_uri)
    if not model_uri.startswith("models:/"):
        fail(f"promote needs a registered model URI (models:/NAME/VERSION), got {model_uri!r}")
    from streamvae.workflows.offline import promote as run_promote

    ref = guard(
        lambda: run_promote(model_uri, alias, tracking=tracking_settings(tracking_uri, work_dir))
    )
    if as_json:
        emit("", {"model": ref.name, "alias": alias, "version": ref.version}, as_json=True)
    else:
        console.print(f"{ref.uri} -> version {ref.version}")


@app.command()
def serve(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    model_uri: Annotated[
        str | None,
        typer.Option(help="Model to serve (default models:/streamvae-tabular@champion)."),
    ] = None,
    bootstrap_servers: Annotated[
        str | None, typer.Option(help="Kafka bootstrap servers host:port[,...].")
    ] = None,
    metrics_port: Annotated[int | None, typer.Option(help="Port of /metrics and /healthz.")] = None,
    max_messages: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many messages.")
    ] = None,
    idle_timeout: Annotated[
        float | None, typer.Option(min=0.0, help="Stop after this many idle seconds.")
    ] = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Consume feature vectors from Kafka, score them, produce alerts and dead letters.

    SIGTERM or Ctrl-C finishes the current batch, flushes, commits and exits 0.

    Example: streamvae serve -c configs/serve.yaml --bootstrap-servers kafka:9092 --model-uri models:/fraud@champion
    """
    extra: dict[str, Any] = {}
    if model_uri is not None:
        extra["model_uri"] = model_uri
    if bootstrap_servers is not None:
        extra["kafka"] = {"bootstrap_servers": bootstrap_servers}
    if metrics_port is not None:
        extra["metrics_port"] = metrics_port
    if tracking_uri is not None:
        extra["tracking"] = {"tracking_uri": tracking_uri}
    options = {"model_uri": "--model-uri", "kafka.bootstrap_servers": "--bootstrap-servers"}
    options |= {"metrics_port": "--metrics-port", "tracking.tracking_uri": "--tracking-uri"}
    settings = guard(lambda: load_settings(ServeSettings, config, set_ or [], extra, options))
    if logging.getLogger().level > logging.INFO:
        setup_logging("INFO")
        logging.getLogger().setLevel(logging.INFO)
    from streamvae.stream.admin import check_reachable

    guard(lambda: check_reachable(settings.kafka))  # before torch and MLflow load: seconds
    from streamvae.service import ScoringService

    def run() -> None:
        with ScoringService(settings) as service:
            err_console.print(f"serving {settings.model_uri}; metrics at {service.metrics_url}")
            stats = service.run(max_messages=max_messages, idle_timeout_s=idle_timeout)
        err_console.print(
            f"stopped: {stats.messages} messages, {stats.consumed} records, {stats.scored} scored, "
            f"{stats.alerted} alerts, {stats.dead_lettered} dead-lettered"
        )

    guard(run)
