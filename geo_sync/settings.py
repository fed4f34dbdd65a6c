"""Typed, frozen settings: loaded once at the edge (the CLI) and passed explicitly.

Source order, lowest to highest priority: the TOML file, then environment
variables ``GEO_SYNC_<SECTION>__<KEY>`` (e.g. ``GEO_SYNC_PRIMARY__LISTEN_PORT``).
Relative paths in the file are taken relative to the file's directory.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from geo_sync.errors import ConfigError
from geo_sync.selection import Selection, check_rules
from geo_sync.settings_errors import describe_env_parse, describe_toml, describe_validation
from geo_sync.tls import check_ca_bundle, is_loopback_url

DEFAULT_PORT = 8650
# HS256 keys shorter than the hash (32 bytes) are brute-forceable; PyJWT warns below it.
MIN_SECRET_BYTES = 32


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LogSettings(_Section):
    """How geo-sync writes its structured logs (always to stderr)."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"


class MetricsSettings(_Section):
    """Where a process serves Prometheus's ``/metrics``; port 0 turns the endpoint off.

    Off by default so that two sites on one host do not fight over a port; the example
    configs turn it on. ``geo-sync worker --processes N`` serves ``worker_port + i``
    from its i-th process (one endpoint per process, no shared files)."""

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    worker_port: int = Field(default=0, ge=0, le=65535)
    # Registry counts and the primary's view are read on this interval, never per scrape.
    refresh_seconds: float = Field(default=15.0, gt=0)


class PrimaryCheckSettings(_Section):
    """Thresholds of `geo-sync check` on a primary (warning, critical)."""

    secondary_seen_warning_seconds: float = Field(default=300.0, gt=0)
    secondary_seen_critical_seconds: float = Field(default=3600.0, gt=0)
    event_log_warning_events: int = Field(default=1_000_000, gt=0)
    event_log_critical_events: int = Field(default=10_000_000, gt=0)
    # Items waiting for their first checksum longer than this mean the checksummer lags.
    checksum_backlog_warning_seconds: float = Field(default=600.0, gt=0)
    checksum_backlog_critical_seconds: float = Field(default=3600.0, gt=0)


class SecondaryCheckSettings(_Section):
    """Thresholds of `geo-sync check` and `status` on a secondary (warning, critical)."""

    clock_skew_warning_seconds: float = Field(default=5.0, gt=0)
    clock_skew_critical_seconds: float = Field(default=10.0, gt=0)
    worker_stale_seconds: float = Field(default=60.0, gt=0)
    lag_warning_events: int = Field(default=1000, gt=0)
    lag_critical_events: int = Field(default=100_000, gt=0)
    lag_warning_seconds: float = Field(default=300.0, gt=0)
    lag_critical_seconds: float = Field(default=3600.0, gt=0)
    failed_warning: int = Field(default=1, gt=0)
    failed_critical: int = Field(default=100, gt=0)
    mismatched_warning: int = Field(default=1, gt=0)
    mismatched_critical: int = Field(default=10, gt=0)
    missing_on_primary_warning: int = Field(default=1, gt=0)
    missing_on_primary_critical: int = Field(default=1000, gt=0)
    free_space_warning_percent: float = Field(default=10.0, ge=0, le=100)
    free_space_critical_percent: float = Field(default=5.0, ge=0, le=100)
    # Lag as a share of the primary's event retention: past it, a backfill is near.
    retention_warning_ratio: float = Field(default=0.5, gt=0, le=1)
    retention_critical_ratio: float = Field(default=0.8, gt=0, le=1)
    # Per-item lag (commit on the primary to verified copy) is reported over the copies
    # verified within this window, at most the newest LAG_SAMPLE of them per type.
    lag_window_seconds: float = Field(default=3600.0, gt=0)


class PrimarySettings(_Section):
    """The primary site: its database, its storage and its Geo API."""

    database_url: str = Field(min_length=1)
    storage_root: Path
    listen_host: str = "127.0.0.1"
    listen_port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    event_retention_seconds: int = Field(default=7 * 86400, gt=0)
    prune_interval_seconds: float = Field(default=60.0, gt=0)
    # Items without a checksum get one within this; all are re-hashed every reverify.
    checksum_interval_seconds: float = Field(default=5.0, gt=0)
    # How often `primary serve` publishes the pushes its git hooks recorded.
    push_spool_interval_seconds: float = Field(default=0.05, gt=0)
    reverify_after_seconds: float = Field(default=7 * 86400.0, gt=0)
    token_leeway_seconds: int = Field(default=10, ge=0, le=300)
    max_token_ttl_seconds: int = Field(default=300, gt=0, le=3600)
    # HTTPS for the Geo API: a PEM certificate (chain) and its private key, both or
    # neither; `primary serve` loads them at startup and refuses to start on a bad pair.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    metrics: MetricsSettings = MetricsSettings()
    checks: PrimaryCheckSettings = PrimaryCheckSettings()

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql+psycopg://")):
            raise ValueError("must start with sqlite:/// or postgresql+psycopg://")
        return value

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> PrimarySettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            given, missing = (("tls_cert_file", "tls_key_file") if self.tls_key_file is None
                              else ("tls_key_file", "tls_cert_file"))
            raise ValueError(f"{given} is set but {missing} is not: HTTPS needs both "
                             "(or neither, for plain HTTP)")
        return self

    @property
    def tls(self) -> bool:
        """Whether the Geo API is served over HTTPS."""
        return self.tls_cert_file is not None


#: A per-data-type setting: ``{type name: value}``, ``"*"`` for every type not named.
#: Type names are checked against the registered types where those are known
#: (``replicators.type_map.check_type_settings``); a type not named takes ``"*"``,
#: else the default its replicator declares.
PerType = dict[str, Annotated[int, Field(gt=0, le=1_000_000)]]


def per_type(setting: PerType, type_name: str, default: int) -> int:
    """The value of a per-type setting for ``type_name``."""
    return setting.get(type_name, setting.get("*", default))


def _one_number_for_all(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        return {"*": value}
    return value


#: Selective sync rules: ``{type name: [patterns]}``, ``"*"`` for every type not named
#: (geo_sync.selection says what the patterns mean).
Rules = dict[str, list[str]]


def _one_list_for_all(value: object) -> object:
    if isinstance(value, str):
        return {"*": [value]}
    if isinstance(value, list):
        return {"*": value}
    return value


class SelectionSettings(_Section):
    """Which items this secondary replicates (default: all). ``include`` and ``exclude``
    map type names (``"*"``: every type not named) to patterns; a plain list applies
    to every type. Changed on a running site with `geo-sync secondary reselect`."""

    include: Rules = Field(default_factory=dict)
    exclude: Rules = Field(default_factory=dict)

    @field_validator("include", "exclude", mode="before")
    @classmethod
    def _one_list_for_all(cls, value: object) -> object:
        return _one_list_for_all(value)

    @field_validator("include", "exclude")
    @classmethod
    def _valid_patterns(cls, value: Rules) -> Rules:
        return check_rules(value)

    def rules(self) -> Selection:
        """The selection these settings describe."""
        return Selection.of(self.include, self.exclude)


MIRROR_PORT = 8660


class MirrorSettings(_Section):
    """The mirror server (`geo-sync secondary serve`): where it listens, its TLS
    certificate and key (both or neither), who may read, and what it does when the
    primary cannot be reached."""

    listen_host: str = "127.0.0.1"
    listen_port: int = Field(default=MIRROR_PORT, ge=0, le=65535)
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # Reads without a reader token (`secondary add-reader`).
    allow_anonymous: bool = False
    # Primary unreachable: serve the newest verified copy marked X-Geo-Stale (true),
    # or answer 503 (false).
    serve_stale: bool = True
    # Ask the primary which events lie beyond the tracking DB's cursor before serving a
    # copy (read-after-write; one ask shared by concurrent requests, and a question
    # about the item itself only when a pending event names it). Off: the tracking DB
    # alone decides, and a change the cursor has not applied yet is served from the
    # older copy.
    confirm_with_primary: bool = True
    # Seconds the answer of an unreachable primary is remembered before asking again.
    primary_down_retry_seconds: float = Field(default=2.0, ge=0)
    # The URL runners push to, named in the refusal of a push (default: primary_url).
    push_url: str | None = None
    # /metrics of `secondary serve` (requests served by the mirror vs proxied); 0: off.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    # `secondary serve` processes sharing the port (0: one per core, at most 4;
    # `--processes` overrides). /metrics is served by the first.
    processes: int = Field(default=0, ge=0, le=64)

    @model_validator(mode="after")
    def _pair(self) -> MirrorSettings:
        if (self.tls_key_file is None) != (self.tls_cert_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together: set both or neither")
        return self


class SecondarySettings(_Section):
    """A secondary site: who it is, where its primary is, where it keeps its copies."""

    name: str = Field(min_length=1, max_length=64)
    secret: str = Field(min_length=1, repr=False)
    # Plain http:// to a primary that is not on this host sends tokens and data in the
    # clear; it is refused unless this is true (loopback http is always allowed).
    # (Before primary_url: its validator reads it.)
    allow_insecure_primary: bool = False
    primary_url: str = Field(min_length=1)
    # A PEM file of the CA certificate(s) that signed the primary's certificate: every
    # connection to the primary (Geo API, blobs) trusts these instead of the system's
    # CAs; git fetches (libgit2) trust them besides the system's. Unset: public CAs.
    primary_ca_bundle: Path | None = None
    database_url: str = Field(min_length=1)
    mirror_root: Path
    broker_url: str = "embedded"
    # Queue and Redis key namespace: lets several secondaries share one Redis.
    queue_name: str = Field(default="geo_sync", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    # Threads of the embedded worker; also how many messages at least a trickle of due
    # rows is cut into, so that every worker thread gets some (message_sizes).
    worker_threads: int = Field(default=4, gt=0, le=256)
    # Rows per dramatiq message at most: a table per type, or one number for every type.
    # A message is worked through by one thread, so heavy items (repositories) go one per
    # message to spread over every thread; small blobs go many to save round trips.
    batch_size: PerType = Field(default_factory=dict)
    lease_seconds: float = Field(default=30.0, ge=1)
    cursor_lease_seconds: float = Field(default=10.0, ge=1)
    poll_wait_seconds: int = Field(default=30, ge=0, le=60)
    scheduler_interval_seconds: float = Field(default=1.0, gt=0)
    requeue_after_seconds: float = Field(default=60.0, gt=0)
    retry_cap_seconds: float = Field(default=3600.0, gt=0)
    missing_retry_cap_seconds: float = Field(default=4 * 3600.0, gt=0)
    http_timeout_seconds: float = Field(default=30.0, gt=0)
    # A loop whose dependency (tracking DB, primary, mirror disk) fails retries at least
    # this often, so a recovery is noticed within seconds; items back off on their own.
    recovery_probe_seconds: float = Field(default=2.0, gt=0, le=60)
    # Items in flight per data type (queued or being transferred), to spare the primary.
    concurrency: PerType = Field(default_factory=dict)
    # Verification: every copy is verified again within this window, paced evenly (each
    # between half the window and the window after its last verification); items
    # verified at once per type; a copy still wrong after this many resyncs is left for
    # an operator.
    reverify_after_seconds: float = Field(default=86400.0, gt=0)
    # The cheap sweep (a stat per copy against its last verified fingerprint) starts
    # this often and checks at most this many copies per type per scheduler pass.
    verification_sweep_interval_seconds: float = Field(default=60.0, gt=0)
    verification_sweep_chunk: int = Field(default=5000, gt=0, le=1_000_000)
    verification_concurrency: PerType = Field(default_factory=dict)
    max_mismatch_rounds: int = Field(default=3, ge=1, le=100)
    # A copy verified before the primary had its checksum is tried again after 2 s,
    # doubling, at most this long apart (the primary takes checksums within seconds).
    disabled_retry_cap_seconds: float = Field(default=60.0, gt=0)
    # Each worker process (and `secondary run`) records that it is alive this often.
    worker_heartbeat_seconds: float = Field(default=10.0, gt=0)
    metrics: MetricsSettings = MetricsSettings()
    checks: SecondaryCheckSettings = SecondaryCheckSettings()
    selection: SelectionSettings = SelectionSettings()
    mirror: MirrorSettings = MirrorSettings()

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        return PrimarySettings._known_driver(value)

    @field_validator("batch_size", "concurrency", "verification_concurrency", mode="before")
    @classmethod
    def _one_number_for_all(cls, value: object) -> object:
        return _one_number_for_all(value)

    @field_validator("batch_size")
    @classmethod
    def _batch_at_most_1000(cls, value: PerType) -> PerType:
        for name, size in value.items():
            if size > 1000:
                raise ValueError(f"{name}: at most 1000 rows per message, got {size}")
        return value

    @field_validator("secret")
    @classmethod
    def _long_secret(cls, value: str) -> str:
        if len(value.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"must be at least {MIN_SECRET_BYTES} bytes (use the one "
                             "`geo-sync primary add-secondary` printed)")
        return value

    @field_validator("broker_url")
    @classmethod
    def _known_broker(cls, value: str) -> str:
        if value != "embedded" and not value.startswith(("redis://", "rediss://")):
            raise ValueError("must be 'embedded' or a redis:// URL")
        return value

    @field_validator("primary_url")
    @classmethod
    def _http_url(cls, value: str, info: ValidationInfo) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL of the primary")
        if (value.startswith("http://") and not info.data.get("allow_insecure_primary")
                and not is_loopback_url(value)):
            raise ValueError(
                f"{value} is plain HTTP to another host: use https:// (with "
                "primary_ca_bundle for a private CA), or set allow_insecure_primary = true "
                "to send tokens and data in the clear")
        return value.rstrip("/")

    @field_validator("primary_ca_bundle")
    @classmethod
    def _readable_bundle(cls, value: Path | None) -> Path | None:
        if value is not None:
            check_ca_bundle(value)
        return value


class Settings(BaseSettings):
    """Everything one geo-sync process needs; ``role`` says which site it runs."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        env_prefix="GEO_SYNC_",
        env_nested_delimiter="__",
    )

    role: Literal["primary", "secondary"]
    log: LogSettings = LogSettings()
    primary: PrimarySettings | None = None
    secondary: SecondarySettings | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's contents arrive as init kwargs; the environment must win over them.
        return (env_settings, init_settings)

    def require_primary(self) -> PrimarySettings:
        """Return the primary section, or explain that this config is not a primary's."""
        if self.primary is None:
            raise ConfigError(
                f"this config is for a {self.role} site and has no [primary] section",
                hint="pass the primary's config with --config, or run `geo-sync primary init`",
            )
        return self.primary


    def require_secondary(self) -> SecondarySettings:
        """Return the secondary section, or explain that this config is not a secondary's."""
        if self.secondary is None:
            raise ConfigError(
                f"this config is for a {self.role} site and has no [secondary] section",
                hint="pass the secondary's config with --config, or run "
                "`geo-sync secondary init`",
            )
        return self.secondary


_PATH_KEYS = {"storage_root", "mirror_root", "tls_cert_file", "tls_key_file",
              "primary_ca_bundle"}


def _resolve_relative_paths(data: dict[str, Any], base: Path) -> None:
    for value in data.values():
        if isinstance(value, dict):
            for key in _PATH_KEYS & value.keys():
                if isinstance(value[key], str) and not Path(value[key]).is_absolute():
                    value[key] = str(base / value[key])
            _resolve_relative_paths(value, base)  # nested sections: [secondary.mirror]


def load_settings(path: Path) -> Settings:
    """Read and validate the TOML file at ``path`` with environment overrides applied."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist",
            hint="pass the right --config FILE, or write one with `geo-sync primary init`",
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start})",
                          hint="save the file as UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise describe_toml(exc, path, text) from None
    _resolve_relative_paths(data, path.resolve().parent)
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise describe_validation(exc, Settings, path, data) from None
    except SettingsError as exc:
        raise describe_env_parse(exc, path) from None


def validate_section(model: type[BaseModel], section: dict[str, Any]) -> None:
    """Check a section an `init` command is about to write, before anything is written."""
    try:
        model(**section)
    except ValidationError as exc:
        bad = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                        for e in exc.errors())
        raise ConfigError(f"invalid option: {bad}", hint="correct the named option; nothing "
                          "was written") from None
