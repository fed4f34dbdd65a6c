"""structlog configuration, in one place: JSON lines on stderr, secrets redacted.

Libraries log through the standard library (uvicorn, dramatiq) or warn through
``warnings`` (PyJWT); both are routed through the same renderer, so every line a
daemon writes is one JSON object, and so is an uncaught exception's traceback.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import types
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import setproctitle


@contextmanager
def without(*modules: str) -> Iterator[None]:
    """Imports made meanwhile see ``modules`` as not installed, so an optional use of
    them is skipped. structlog and httpx both import rich when it is installed (the
    CLI's tables use it): structlog only to render tracebacks itself, which geo-sync
    never lets it do (``format_exc_info`` makes them text first), httpx (with pygments)
    for its own command line. Measured: these were 0.2 s of CPU at start-up, a quarter
    of `status --json`. A module a process loaded already is left as it is."""
    hidden = [name for name in modules if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # `import name` fails
    try:
        yield
    finally:
        for name in hidden:
            del sys.modules[name]


def _import_structlog() -> types.ModuleType:
    with without("rich"):
        import structlog  # noqa: PLC0415
    return structlog


if TYPE_CHECKING:
    import structlog
else:
    structlog = _import_structlog()

_SECRET_KEYS = ("secret", "token", "authorization", "password", "jwt")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Replace the value of any key that names a credential, so secrets never reach logs."""
    for key in list(event_dict):
        if any(marker in key.lower() for marker in _SECRET_KEYS):
            event_dict[key] = "[redacted]"
    return event_dict


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    """Set up structlog and the standard library's logging for the whole process; safe
    to call more than once."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        # One write per line (PrintLogger writes the newline apart): worker processes share
        # one stderr, and a line cut in two there runs into the next process's line.
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _component_from_logger_name,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
    ))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(_LEVELS[level])
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "dramatiq"):
        library = logging.getLogger(name)
        library.handlers = []
        library.propagate = True
    # Alembic narrates every schema check, and httpx every request, at INFO; only their
    # problems matter in a log (a request's outcome is logged by our own code).
    for chatty in ("alembic", "httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, _LEVELS[level]))
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _component_from_logger_name(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    record = event_dict.get("_record")
    if record is not None:
        event_dict.setdefault("component", record.name)
    return event_dict


def _log_uncaught(kind: type[BaseException], value: BaseException,
                  traceback: types.TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, traceback)
        return
    structlog.get_logger(component="process").critical(
        "uncaught_exception", exc_info=(kind, value, traceback))
    # The interpreter would now wait for every non-daemon thread, such as a daemon's
    # loops, whose stop signals are blocked: the process would go on without its main
    # thread and ignore SIGTERM. A process whose main thread died exits, non-zero.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None:
        return
    structlog.get_logger(component="thread").critical(
        "uncaught_exception", thread=args.thread.name if args.thread else None,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


def set_process_title(role: str) -> None:
    """Name this process in ps and top ("geo-sync worker east #2") instead of the
    interpreter's command line, which for spawned children is `python -c from
    multiprocessing.spawn ...`."""
    setproctitle.setproctitle(f"geo-sync {role}")


def get_logger(name: str) -> Any:
    """A bound logger tagged with the component name."""
    return structlog.get_logger(component=name)
