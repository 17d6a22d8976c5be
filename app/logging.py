"""structlog configuration: JSON lines in production, readable console lines in development.

The app's own events (structlog loggers) are rendered by structlog and written straight to
stderr (`StderrLogger`). Standard-library loggers (gunicorn, uvicorn, sqlalchemy, alembic) go
through the same processors and renderer via `ProcessorFormatter`, so a production log is one
JSON object per line whatever emitted it. Called by `create_app()` and by `gunicorn_conf.py`;
never at import.
"""

from __future__ import annotations

import logging
import logging.config
import sys
from contextvars import ContextVar
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from app.settings import LogSettings

# The current request's id, set by HttpMiddleware. One ContextVar set and reset per
# request is cheaper than structlog's bind_contextvars/reset_contextvars pair (measured: bench).
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)


def add_request_id(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    request_id = REQUEST_ID.get()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    return event_dict


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]  # typeshed: generic stream
    """Writes to whatever `sys.stderr` is at emit time (like logging's last-resort handler), so
    a test capturing stderr, or a server redirecting it, never leaves a handler on a closed
    stream."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # a read-only view of the live stream
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


class StderrLogger:
    """structlog's last step for the app's events: the rendered line to the current stderr.

    Not handed on to the standard library's logging: that builds a `LogRecord` (two, as
    `ProcessorFormatter` copies it), looks up the caller by walking frames and runs a formatter,
    ~80 us per line measured here against ~25 us for this path; the access line is written for
    every request. Written at emit time to whatever `sys.stderr` is (see `StderrHandler`), with
    one write per line like the standard handler, so lines from both paths never interleave.
    """

    def __init__(self, name: str) -> None:
        self.name = name  # for structlog.stdlib.add_logger_name

    def msg(self, message: str) -> None:
        stream = sys.stderr
        stream.write(message + "\n")
        stream.flush()

    debug = info = warning = error = critical = exception = msg


def _stderr_logger(*args: Any) -> StderrLogger:
    """The logger factory: `structlog.get_logger(name)` passes the name."""
    return StderrLogger(args[0] if args and isinstance(args[0], str) else "app")


def _renderer(settings: LogSettings, *, production: bool) -> list[Processor]:
    """The last processors: exception to text, event dict to one line."""
    if use_json(settings, production=production):
        return [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    # Plain tracebacks: rich's default shows every frame's locals, which took ~10 s for one
    # SQLAlchemy stack here (blocking the event loop) and can print secrets into the log.
    return [structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)]


def use_json(settings: LogSettings, *, production: bool) -> bool:
    return settings.format == "json" or (settings.format == "auto" and production)


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        add_request_id,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def dict_config(settings: LogSettings, *, production: bool) -> dict[str, Any]:
    """A `logging.config.dictConfig` mapping; gunicorn takes it as `logconfig_dict`."""
    final: list[Processor] = [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        *_renderer(settings, production=production),
    ]
    handler = {"()": StderrHandler, "formatter": "structlog"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structlog": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": final,
                "foreign_pre_chain": _shared_processors(),
            }
        },
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": settings.level},
        "loggers": {
            # Routed to root; gunicorn and uvicorn otherwise attach handlers of their own.
            name: {"handlers": [], "propagate": True, "level": settings.level}
            for name in ("gunicorn.error", "uvicorn", "uvicorn.error", "alembic")
        }
        # SQLAlchemy logs every statement at INFO; DB__ECHO turns that on when wanted.
        | {"sqlalchemy": {"handlers": [], "propagate": True, "level": "WARNING"}}
        | {
            # The app writes one access line per request itself.
            name: {"handlers": [], "propagate": False}
            for name in ("gunicorn.access", "uvicorn.access")
        },
    }


def configure_logging(settings: LogSettings, *, production: bool) -> None:
    logging.config.dictConfig(dict_config(settings, production=production))
    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.processors.StackInfoRenderer(),
            *_renderer(settings, production=production),
        ],
        logger_factory=_stderr_logger,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[settings.level]
        ),
        # Each line reads the configuration of the moment (about a microsecond): a logger
        # cached at first use keeps the one it met first, though tests configure many times.
        cache_logger_on_first_use=False,
    )
    if not sys.stderr.isatty():
        logging.captureWarnings(True)
