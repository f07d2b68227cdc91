"""Typed settings, read from `RPM_*` environment variables and a `.env` file.

Each area has its own prefix (`RPM_DATABASE_`, `RPM_MQTT_`, `RPM_HTTP_`, ...), so every
variable is named `RPM_<AREA>_<FIELD>` and listed in the README with its default.
`load_settings()` turns pydantic's validation errors into one `SettingsError` whose
message names each bad variable and what it expects.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from dataclasses import dataclass
from datetime import time, timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rpm.devices.checks import TimeLimits

ENV_FILE = ".env"


class SettingsError(Exception):
    """A setting has a value the service cannot start with."""


class _Area(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=ENV_FILE, env_file_encoding="utf-8", extra="ignore", frozen=True
    )


class ServiceSettings(_Area):
    model_config = SettingsConfigDict(env_prefix="RPM_")

    data_dir: Path = Field(
        Path(".rpm"),
        description="Where the embedded database and broker keep their data.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    time_zone: str = Field(
        "UTC",
        description="The clock the web UI shows times on for a user who chose none and has"
        " no staff record (an admin, say): an IANA name such as America/Chicago.",
    )

    @field_validator("time_zone")
    @classmethod
    def _iana_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{name!r} is not an IANA time zone name (e.g. America/Chicago)"
            ) from None
        return name


class DatabaseSettings(_Area):
    model_config = SettingsConfigDict(env_prefix="RPM_DATABASE_")

    url: str | None = Field(
        None,
        description="postgresql:// URL of the store; unset starts an embedded PostgreSQL.",
    )
    pool_min_size: int = Field(2, ge=1)
    pool_max_size: int = Field(10, ge=1)
    connect_timeout_s: float = Field(5.0, gt=0)
    timescale: Literal["auto", "on", "off"] = Field(
        "auto",
        description="auto: use TimescaleDB when the extension is available; on: require it.",
    )
    chunk_interval_days: int = Field(7, ge=1)
    compress_after_days: int = Field(30, ge=1)
    retention_days: int | None = Field(
        None, ge=1, description="Drop readings older than this (TimescaleDB only); unset: keep."
    )

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("postgresql", "postgres"):
            raise ValueError("expected a postgresql:// URL, e.g. postgresql://rpm@db:5432/rpm")
        return value


class MqttSettings(_Area):
    model_config = SettingsConfigDict(env_prefix="RPM_MQTT_")

    url: str | None = Field(
        None,
        description="mqtt:// or mqtts:// URL of the broker; unset starts an embedded broker.",
    )
    client_id: str = Field(
        default_factory=lambda: f"rpm-{socket.gethostname()}"[:23],
        min_length=1,
        max_length=23,
        description="MQTT client id; unique per process and stable across its restarts.",
    )
    # Plain by default: a shared subscription is for scale-out only, and on a broker that
    # drops shared subscriptions across its restart (Mosquitto before 2.0.12) it loses
    # what devices publish until the consumer subscribes again (docs/mqtt-consumer.md).
    shared_group: str = Field(
        "",
        pattern=r"^[A-Za-z0-9_-]*$",
        description="MQTT shared-subscription group of processes sharing the device stream;"
        " empty: a plain subscription (one process).",
    )
    keepalive_s: int = Field(30, ge=5)
    session_expiry_s: int = Field(
        7 * 24 * 3600, ge=0, description="MQTT 5: how long the broker keeps our session."
    )
    leave_on_stop: bool = Field(
        False,
        description="On a clean stop, leave the shared group for good (scale-down).",
    )
    embedded_port: int = Field(
        1884, ge=1, le=65535, description="Port of the embedded broker (beside a system 1883)."
    )
    # No switch turns verification off: a device network is where a spoofed broker would
    # collect readings, and a private CA (`rpm tls make-certs`) costs one file here.
    ca_file: Path | None = Field(
        None,
        description="mqtts:// only: PEM file of the CA certificate(s) the broker's certificate"
        " must chain to; unset: the system's trust store.",
    )
    client_cert_file: Path | None = Field(
        None,
        description="mqtts:// only: PEM client certificate, for a broker that asks for one"
        " (with RPM_MQTT_CLIENT_KEY_FILE).",
    )
    client_key_file: Path | None = Field(
        None, description="The client certificate's private key (PEM, not encrypted)."
    )
    # Off by default: the embedded broker has no dynamic security plugin, and a broker
    # whose device accounts are kept some other way is left to it.
    dynsec_url: str | None = Field(
        None,
        description="mqtt:// or mqtts:// URL, with the user and password of the broker's"
        " dynamic security admin: rpm then makes, rotates and revokes each device's broker"
        " identity as the registry changes. Unset: rpm leaves the broker's accounts alone.",
    )
    dynsec_timeout_s: float = Field(
        5.0, gt=0, le=60, description="How long a device change waits for the broker's answer."
    )

    @field_validator("url", "dynsec_url")
    @classmethod
    def _mqtt_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("expected mqtt://[user:password@]host[:port] or mqtts://...")
        try:
            parts.port  # noqa: B018 - parsing the port is the check
        except ValueError as exc:
            raise ValueError(f"the port is not a number from 1 to 65535 ({exc})") from None
        return value

    @field_validator("ca_file", "client_cert_file", "client_key_file")
    @classmethod
    def _readable_file(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError("no such file (or not a file)")
        return path

    def broker(self) -> BrokerAddress:
        """The configured broker (`url` must be set), with its TLS files under mqtts://."""
        assert self.url is not None, "only a configured broker has an address"
        return BrokerAddress.from_url(self.url, self._tls(self.url))

    def dynsec_broker(self) -> BrokerAddress | None:
        """The dynamic security admin's broker, reached with the same TLS files."""
        if self.dynsec_url is None:
            return None
        return BrokerAddress.from_url(self.dynsec_url, self._tls(self.dynsec_url))

    def _tls(self, url: str | None) -> BrokerTls | None:
        if url is None or urlsplit(url).scheme != "mqtts":
            return None
        return BrokerTls(self.ca_file, self.client_cert_file, self.client_key_file)

    def tls_problems(self) -> list[str]:
        """What keeps the TLS settings from making a connection, one line a variable."""
        files = {
            "RPM_MQTT_CA_FILE": self.ca_file,
            "RPM_MQTT_CLIENT_CERT_FILE": self.client_cert_file,
            "RPM_MQTT_CLIENT_KEY_FILE": self.client_key_file,
        }
        given = [name for name, path in files.items() if path is not None]
        if not given:
            return []
        tls = self._tls(self.url)
        # A CA with a plain URL means someone believes the connection is encrypted.
        if tls is None:
            return [f"{name}: set, but RPM_MQTT_URL is not an mqtts:// URL" for name in given]
        if self.client_cert_file is not None and self.client_key_file is None:
            return ["RPM_MQTT_CLIENT_KEY_FILE: needed with RPM_MQTT_CLIENT_CERT_FILE"]
        if self.client_key_file is not None and self.client_cert_file is None:
            return ["RPM_MQTT_CLIENT_CERT_FILE: needed with RPM_MQTT_CLIENT_KEY_FILE"]
        try:
            tls.context()
        except SettingsError as exc:
            return [str(exc)]
        return []


class IngestSettings(_Area):
    model_config = SettingsConfigDict(env_prefix="RPM_INGEST_")

    batch_size: int = Field(500, ge=1, le=5000, description="Most messages per commit.")
    max_future_s: int = Field(
        300, ge=0, description="Reject readings stamped further ahead of their receipt."
    )
    max_age_days: int | None = Field(
        365, ge=1, description="Reject readings older than this; unset accepts any age."
    )

    def time_limits(self) -> TimeLimits:
        return TimeLimits(
            max_future=timedelta(seconds=self.max_future_s),
            max_age=None if self.max_age_days is None else timedelta(days=self.max_age_days),
        )


CONFIRM_REQUEST_TEMPLATE = (
    "Your care team would like a second {what} reading to confirm your last one: please"
    " measure again within {minutes} minutes. Reply STOP to end these texts."
)


class RulesSettings(_Area):
    model_config = SettingsConfigDict(env_prefix="RPM_RULES_")

    missed_check_interval_s: int = Field(
        900, ge=10, description="How often the missed-readings rules run over every patient."
    )
    sweep_interval_s: int = Field(
        30, ge=1, description="How often queued batches that nobody evaluated are looked for."
    )
    sweep_after_s: int = Field(
        60, ge=5, description="A queued batch this old was left by a stopped process."
    )
    confirm_check_interval_s: int = Field(
        60,
        ge=5,
        description="How often findings held for a repeat reading are looked at: one whose"
        " window passed becomes an alert.",
    )
    confirm_request_template: str = Field(
        CONFIRM_REQUEST_TEMPLATE,
        description="The SMS asking a patient to re-measure: {what} (e.g. blood pressure),"
        " {minutes}. No name and no values.",
    )


class AlertsSettings(_Area):
    model_config = SettingsConfigDict(env_prefix="RPM_ALERTS_")

    sms_severities: list[Literal["critical", "high", "warning"]] = Field(
        ["critical"],
        description="Severities that also go by SMS to the on-call nurse (a care plan's"
        " notify.sms overrides it per patient); the others wait in the worklist.",
    )
    ack_deadline_critical_min: int = Field(
        15, ge=1, description="An open critical alert escalates to the next tier after this."
    )
    ack_deadline_high_min: int = Field(60, ge=1, description="The same for a high alert.")
    ack_deadline_warning_min: int = Field(
        0, ge=0, description="The same for a warning; 0: a warning never escalates."
    )
    reminder_interval_min: int = Field(
        15, ge=1, description="Past the last tier, the reminder interval until acknowledged."
    )
    escalation_check_interval_s: int = Field(
        30, ge=1, description="How often alerts past their deadline are looked for."
    )
    sms_validity_min: int = Field(
        30, ge=1, le=600, description="Twilio drops an SMS still queued after this."
    )
    sms_rate_limit: int = Field(
        5, ge=1, description="SMS per recipient per window; beyond, one digest SMS counts them."
    )
    sms_rate_window_min: int = Field(15, ge=1, description="The rate limit's window.")
    sms_template: str = Field(
        "RPM {severity} alert #{alert_id}: open the worklist {link}",
        description="The SMS text: {severity}, {alert_id}, {link}. No patient data.",
    )
    digest_template: str = Field(
        "RPM: {count} alerts need you ({critical} critical): open the worklist {link}",
        description="A digest SMS: {count}, {critical}, {link}.",
    )
    public_url: str = Field(
        "http://127.0.0.1:8000",
        description="The service's address as phones and Twilio reach it: SMS links,"
        " status callbacks, and the URL webhook signatures are checked against.",
    )
    dispatch_poll_s: float = Field(
        1.0, gt=0, description="How often the SMS outbox is polled (it is also woken at once)."
    )
    sms_senders: int = Field(
        32,
        ge=1,
        le=128,
        description="SMS in flight at once, each a thread of the dispatcher's own: Twilio"
        " answers in 100s of ms, so this bounds the SMS a second to about senders / answer time.",
    )


class AdherenceSettings(_Area):
    model_config = SettingsConfigDict(env_prefix="RPM_ADHERENCE_")

    reminder_after_days: int = Field(
        3,
        ge=1,
        le=30,
        description="Whole silent days (no reading) before an opted-in patient is reminded"
        " by SMS; a patient's own setting overrides it.",
    )
    reminder_check_interval_s: int = Field(
        900, ge=10, description="How often patients due a reminder are looked for."
    )
    reminder_template: str = Field(
        "Your care team has had no reading from your home device for {days} days."
        " Please take one today. Reply STOP to end these reminders.",
        description="The reminder SMS: {days}. No name and no values.",
    )
    quiet_hours_start: time = Field(
        time(21, 0), description="Reminders wait out these hours on the patient's clock..."
    )
    quiet_hours_end: time = Field(time(9, 0), description="...unless the patient has their own.")
    reminder_validity_h: int = Field(
        12, ge=1, le=72, description="A reminder not sent within this is dropped."
    )


class EhrSettings(_Area):
    model_config = SettingsConfigDict(env_prefix="RPM_EHR_")

    push_poll_s: float = Field(
        5.0, gt=0, description="How often the EHR outbox is polled (new readings also wake it)."
    )
    push_batch_size: int = Field(
        50, ge=1, le=500, description="Most readings sent to one EHR in one transaction Bundle."
    )
    push_max_attempts: int = Field(
        20,
        ge=1,
        description="Tries before a reading the EHR keeps failing goes to the dead end (admins"
        " see it and can retry it).",
    )
    push_timeout_s: float = Field(30.0, gt=0, description="One EHR request's time limit.")
    push_keep_sent_days: int = Field(
        7, ge=1, description="Outbox rows sent are kept this long, then deleted."
    )


class BulkSettings(_Area):
    """FHIR Bulk Data export and SMART Backend Services sign-in (docs/fhir.md)."""

    model_config = SettingsConfigDict(env_prefix="RPM_BULK_")

    run_exports: bool = Field(
        True,
        description="Whether this process runs export jobs (false: only other processes do).",
    )
    poll_s: float = Field(5.0, gt=0, description="How often pending exports are looked for.")
    lease_s: float = Field(
        60.0,
        gt=0,
        description="How long an exporter holds a job without progress before another may take"
        " it up (one that died).",
    )
    file_resources: int = Field(
        10_000, ge=1, description="Most resources in one NDJSON file of an export."
    )
    expiry_hours: int = Field(
        24, ge=1, description="A finished export's files are deleted this long after it ends."
    )
    token_ttl_s: int = Field(
        300, ge=60, le=3600, description="A SMART Backend Services access token's lifetime."
    )


class TwilioSettings(_Area):
    model_config = SettingsConfigDict(env_prefix="RPM_TWILIO_")

    account_sid: str = Field("", description="Empty: no SMS is sent (they wait in the outbox).")
    auth_token: SecretStr = Field(SecretStr(""), description="Also checks webhook signatures.")
    from_number: str = Field("", description="E.164 sender, or use a messaging service.")
    messaging_service_sid: str = Field("", description="MG...: sends through the service.")
    api_base_url: str = Field(
        "", description="Another Twilio API address (a test double); empty: Twilio's own."
    )
    timeout_s: float = Field(10.0, gt=0, description="An API call slower than this is retried.")


class AuthSettings(_Area):
    model_config = SettingsConfigDict(env_prefix="RPM_AUTH_")

    token_ttl_min: int = Field(
        15, ge=1, le=720, description="An API bearer token's lifetime from sign-in."
    )
    idle_timeout_min: int = Field(
        15, ge=1, le=720, description="A browser session ends after this long without a request."
    )
    session_max_hours: int = Field(
        12, ge=1, le=72, description="A browser session ends this long after sign-in, whatever."
    )
    login_failures_per_username: int = Field(
        5, ge=1, description="Failed sign-ins for one username, within the window, before a lock."
    )
    login_failures_per_client: int = Field(
        20, ge=1, description="Failed sign-ins from one address, within the window, before a lock."
    )
    login_window_min: int = Field(15, ge=1, description="The failed sign-ins' window.")
    # Chromium keeps a Secure cookie that http://127.0.0.1 or http://localhost sets (both
    # count as secure contexts; measured with Chromium 156), so `make up` works with the
    # default. Plain http at any other address needs false, or the browser drops it.
    cookie_secure: bool = Field(
        True, description="The browser session's cookie is sent over https only."
    )


class HttpSettings(_Area):
    model_config = SettingsConfigDict(env_prefix="RPM_HTTP_")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # Behind a TLS terminator the peer is the proxy: only from these addresses are its
    # X-Forwarded-For (the client's address, for the audit trail and sign-in limits) and
    # X-Forwarded-Proto (https, for the links rpm writes: FHIR, SMART) believed; from any
    # other peer those headers are ignored, or a client could forge its address.
    trusted_proxies: str = Field(
        "127.0.0.1,::1",
        description="Comma-separated addresses or networks (CIDR) of the TLS-terminating"
        " proxy, whose X-Forwarded-For and X-Forwarded-Proto are believed.",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, value: str) -> str:
        # Written out as uvicorn parses them: it takes an entry it cannot parse (a network
        # with host bits set, say) for a literal name and trusts nothing by it, silently.
        entries = []
        for entry in filter(None, (part.strip() for part in value.split(","))):
            try:
                if "/" in entry:
                    entries.append(str(ipaddress.ip_network(entry, strict=False)))
                else:
                    entries.append(str(ipaddress.ip_address(entry)))
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or network (e.g. 172.28.0.0/24)"
                ) from None
        return ",".join(entries)


@dataclass(frozen=True)
class BrokerTls:
    """How an mqtts:// connection verifies the broker, and proves who we are if asked."""

    ca_file: Path | None = None  # None: the system's trust store
    cert_file: Path | None = None
    key_file: Path | None = None

    def context(self) -> ssl.SSLContext:
        """A client context that checks the broker's certificate and host name.

        Made for each connection, so that a CA bundle replaced on disk (a CA rotation)
        is read at the next reconnection. Raises `SettingsError` naming the variable.
        """
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise SettingsError(
                f"RPM_MQTT_CA_FILE: {self.ca_file} holds no PEM CA certificate we can read ({exc})"
            ) from None
        # MQTT brokers and device stacks all speak 1.2; nothing older is safe.
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file is not None:
            try:
                context.load_cert_chain(self.cert_file, self.key_file)
            except (OSError, ssl.SSLError) as exc:
                raise SettingsError(
                    f"RPM_MQTT_CLIENT_CERT_FILE, RPM_MQTT_CLIENT_KEY_FILE: {self.cert_file} and"
                    f" {self.key_file} are not a PEM certificate and its unencrypted key ({exc})"
                ) from None
        return context


@dataclass(frozen=True)
class BrokerAddress:
    """Where the MQTT broker is, parsed from `RPM_MQTT_URL` or the embedded defaults."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: BrokerTls | None = None  # None: plain MQTT

    @classmethod
    def from_url(cls, url: str, tls: BrokerTls | None = None) -> BrokerAddress:
        """An mqtts:// URL without `tls` verifies the broker against the system's CAs."""
        parts = urlsplit(url)
        if parts.scheme == "mqtts":
            tls = tls or BrokerTls()
        elif tls is not None:
            raise ValueError(f"TLS files for a plain {parts.scheme}:// URL")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
        )

    def __str__(self) -> str:
        """The address without credentials, for logs."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    service: ServiceSettings
    database: DatabaseSettings
    mqtt: MqttSettings
    ingest: IngestSettings
    rules: RulesSettings
    http: HttpSettings
    alerts: AlertsSettings = Field(default_factory=lambda: AlertsSettings())  # type: ignore[call-arg]
    twilio: TwilioSettings = Field(default_factory=lambda: TwilioSettings())  # type: ignore[call-arg]
    auth: AuthSettings = Field(default_factory=lambda: AuthSettings())  # type: ignore[call-arg]
    adherence: AdherenceSettings = Field(default_factory=lambda: AdherenceSettings())  # type: ignore[call-arg]
    ehr: EhrSettings = Field(default_factory=lambda: EhrSettings())  # type: ignore[call-arg]
    bulk: BulkSettings = Field(default_factory=lambda: BulkSettings())  # type: ignore[call-arg]


_AREAS: dict[str, type[_Area]] = {
    "service": ServiceSettings,
    "database": DatabaseSettings,
    "mqtt": MqttSettings,
    "ingest": IngestSettings,
    "rules": RulesSettings,
    "http": HttpSettings,
    "alerts": AlertsSettings,
    "twilio": TwilioSettings,
    "auth": AuthSettings,
    "adherence": AdherenceSettings,
    "ehr": EhrSettings,
    "bulk": BulkSettings,
}


def load_settings() -> Settings:
    """Read every area; raise `SettingsError` listing every bad variable at once."""
    areas: dict[str, _Area] = {}
    problems: list[str] = []
    for name, area in _AREAS.items():
        try:
            areas[name] = area()
        except ValidationError as exc:
            problems.extend(_describe(area, exc))
    if problems:
        raise SettingsError("invalid settings:\n" + "\n".join(f"  {p}" for p in problems))
    settings = Settings.model_validate(areas)
    if problems := settings.mqtt.tls_problems():
        raise SettingsError("invalid settings:\n" + "\n".join(f"  {p}" for p in problems))
    if settings.database.pool_min_size > settings.database.pool_max_size:
        raise SettingsError(
            "invalid settings:\n  RPM_DATABASE_POOL_MIN_SIZE: must not exceed "
            f"RPM_DATABASE_POOL_MAX_SIZE ({settings.database.pool_max_size})"
        )
    return settings


_SENSITIVE = ("url", "password", "secret", "token", "key")


def _describe(area: type[_Area], exc: ValidationError) -> list[str]:
    prefix = str(area.model_config.get("env_prefix", ""))
    lines = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        variable = (prefix + field).upper()
        message = error["msg"].removeprefix("Value error, ")
        # URLs and secrets may carry credentials: name the variable, never echo its value.
        shown = "" if any(word in field for word in _SENSITIVE) else f"={error['input']!r}"
        lines.append(f"{variable}{shown}: {message}")
    return lines
