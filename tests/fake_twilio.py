"""A local fake of Twilio's Programmable Messaging REST API, for the real `twilio` SDK.

Twilio's cloud cannot run here, so this speaks the part of its API rpm uses, over real
HTTP on 127.0.0.1: create, fetch and list Message resources (`/2010-04-01/Accounts/
{AccountSid}/Messages.json`), HTTP Basic auth, and Twilio's error body
(`{"code", "message", "more_info", "status"}`). It also plays Twilio's side of the
webhooks: status callbacks and inbound SMS, signed with X-Twilio-Signature.

Point the SDK at it (twilio 9.x joins `client.api.base_url` with the versioned path):

    with FakeTwilio() as fake:
        client = Client(fake.account_sid, fake.auth_token)
        client.api.base_url = fake.base_url
        client.messages.create(to="+15005550010", from_="+15005550006", body="hi")

Shapes follow Twilio's documentation: twilio.com/docs/messaging/api/message-resource
(Message JSON, list paging, initial status), /docs/messaging/guides/webhook-request and
/docs/messaging/guides/track-outbound-message-status (webhook parameters),
/docs/usage/webhooks/webhooks-security (signature), /docs/api/errors/<code> (errors).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self, cast
from urllib.parse import parse_qs, urlencode

API_VERSION = "2010-04-01"
DEFAULT_ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
DEFAULT_AUTH_TOKEN = "fake-twilio-auth-token-0123456789"
# Twilio picks a sender from a Messaging Service's pool; the fake's pool has this one.
SERVICE_SENDER = "+15017122661"
# Twilio's limit on Body (error 21617); longer texts must be split by the caller.
MAX_BODY_CHARS = 1600
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
# The HTTP timeout for the webhooks the fake posts (Twilio's own is 15 s).
WEBHOOK_TIMEOUT_S = 10.0

_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_SERVICE_SID = re.compile(r"^MG[0-9a-f]{32}$")
_ROUTE = re.compile(
    rf"^/{API_VERSION}/Accounts/(?P<account>[^/]+)/Messages(?:/(?P<sid>[^/]+))?\.json$"
)
# Initial status of a created Message: "accepted" when a Messaging Service is used,
# "queued" when not (docs: outbound-message-status-in-status-callbacks).
_PENDING = frozenset({"queued", "accepted", "scheduled"})
# Stock messages for injected failures, as Twilio words them.
_STOCK_MESSAGES = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    20503: "Service Unavailable",
}


@dataclass
class SentMessage:
    """One create request the fake accepted, as the client sent it."""

    sid: str  # "SM" + 32 hex
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    status_callback: str | None
    validity_period: int | None
    received_at: float  # time.time() when the request arrived
    form: dict[str, str]  # the raw form fields


@dataclass(frozen=True)
class _Failure:
    status: int
    code: int
    message: str


@dataclass
class _Record:
    """A Message resource as the fake stores it, outbound or inbound."""

    sid: str
    direction: str  # "outbound-api" | "inbound"
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    status: str
    created_at: float
    updated_at: float
    status_callback: str | None = None
    error_code: int | None = None


@dataclass
class _State:
    """Everything the handler threads share; guarded by `lock`."""

    lock: threading.Condition = field(default_factory=threading.Condition)
    sent: list[SentMessage] = field(default_factory=list)
    records: dict[str, _Record] = field(default_factory=dict)
    requests: int = 0
    failures: deque[_Failure] = field(default_factory=deque)
    delays: deque[float] = field(default_factory=deque)
    holds: int = 0  # creates still to hold (hold_next)
    held: int = 0  # creates held so far
    failing_numbers: dict[str, _Failure] = field(default_factory=dict)
    listeners: list[Callable[[SentMessage], None]] = field(default_factory=list)


def new_sid(prefix: str) -> str:
    """A Twilio-style SID: two letters and 32 lowercase hex digits."""
    return prefix + secrets.token_hex(16)


def sign(auth_token: str, url: str, params: dict[str, str]) -> str:
    """X-Twilio-Signature: base64 HMAC-SHA1, keyed by the auth token, of the full URL
    followed by each POST parameter's name and value, sorted by name (webhooks-security).

    Written out here rather than borrowed from the SDK, so that the SDK's
    RequestValidator accepting it in the tests is a real cross-check."""
    payload = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _rfc2822(timestamp: float | None) -> str | None:
    # Twilio writes dates as RFC 2822 in GMT: "Tue, 27 Nov 2018 16:14:39 +0000".
    if timestamp is None:
        return None
    return format_datetime(datetime.fromtimestamp(int(timestamp), UTC))


def _segments(body: str) -> int:
    # ASCII stands in for GSM-7 (160 characters, 153 per part when split); anything
    # else is UCS-2 (70, 67 per part). Close enough for a fake.
    single, part = (160, 153) if body.isascii() else (70, 67)
    if len(body) <= single:
        return 1
    return -(-len(body) // part)


def _error_body(failure: _Failure) -> dict[str, Any]:
    return {
        "code": failure.code,
        "message": failure.message,
        "more_info": f"https://www.twilio.com/docs/errors/{failure.code}",
        "status": failure.status,
    }


def _parse_date_filter(value: str) -> tuple[float, float]:
    """The [start, end) span of seconds a DateSent filter value names: a whole GMT day
    for `YYYY-MM-DD`, one second for the SDK's `YYYY-MM-DDTHH:MM:SSZ`."""
    if "T" in value:
        moment = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        return moment.timestamp(), moment.timestamp() + 1
    day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    return day.timestamp(), day.timestamp() + 86400


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeTwilio) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up is what delay_next is for, not an error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server_version = "FakeTwilio/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the test output stays quiet; the fake records what it saw instead

    def do_GET(self) -> None:
        cast(_Server, self.server).fake._handle(self, "GET")

    def do_POST(self) -> None:
        cast(_Server, self.server).fake._handle(self, "POST")

    def do_DELETE(self) -> None:
        cast(_Server, self.server).fake._handle(self, "DELETE")

    def send_json(self, status: int, document: dict[str, Any]) -> None:
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="Twilio API"')
        self.end_headers()
        self.wfile.write(data)


class FakeTwilio:
    """Twilio's Messages API on 127.0.0.1, with knobs for the failures a test needs.

    Thread-safe: the server answers each request in its own thread, and the test may
    read `messages` or arm failures from any thread meanwhile."""

    def __init__(
        self, account_sid: str = DEFAULT_ACCOUNT_SID, auth_token: str = DEFAULT_AUTH_TOKEN
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._state = _State()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        # Set on stop, so a response held by delay_next does not outlive the fake.
        self._stopping = threading.Event()

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("FakeTwilio is already running")
        self._stopping.clear()
        self._server = _Server(self)
        # A short poll keeps stop() (which waits for the serving loop) quick.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), name="fake-twilio", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>`, for `client.api.base_url`."""
        if self._server is None:
            raise RuntimeError("FakeTwilio is not running; call start() first")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- what the test reads ---------------------------------------------------------

    @property
    def messages(self) -> list[SentMessage]:
        """The accepted creates, in the order they arrived (a copy)."""
        with self._state.lock:
            return list(self._state.sent)

    @property
    def requests(self) -> int:
        """Every create attempt, including the ones that failed."""
        with self._state.lock:
            return self._state.requests

    def status_of(self, sid: str) -> str:
        """The Message's current status (its initial one, or the last status callback's)."""
        with self._state.lock:
            return self._state.records[sid].status

    def wait_for(self, count: int, timeout: float = 10) -> list[SentMessage]:
        """Block until at least `count` creates were accepted; TimeoutError if not."""
        with self._state.lock:
            if not self._state.lock.wait_for(lambda: len(self._state.sent) >= count, timeout):
                raise TimeoutError(
                    f"{len(self._state.sent)} message(s) accepted within {timeout} s, "
                    f"expected {count}"
                )
            return list(self._state.sent)

    # -- knobs -----------------------------------------------------------------------

    def fail_next(
        self, status: int, code: int | None = None, message: str | None = None, times: int = 1
    ) -> None:
        """Answer the next `times` create requests with this HTTP status and Twilio error
        body, before looking at them (as when Twilio is overloaded or down).

        `code` defaults to 20000 + status (20429, 20500, 20503: Twilio's codes for
        those statuses); `message` to Twilio's wording for the code."""
        code = code if code is not None else 20000 + status
        text = message if message is not None else _STOCK_MESSAGES.get(code, f"Error {code}")
        with self._state.lock:
            self._state.failures.extend([_Failure(status, code, text)] * times)

    def fail_to(self, number: str, status: int, code: int, message: str) -> None:
        """Always refuse creates to `number` (a permanent error such as 21211 or 21610)."""
        with self._state.lock:
            self._state.failing_numbers[number] = _Failure(status, code, message)

    def delay_next(self, seconds: float, times: int = 1) -> None:
        """Hold the response to the next `times` create requests for `seconds`.

        The request is handled first, so a create the client gives up on is still
        accepted and recorded: Twilio sent the SMS, the client never heard. That is
        the case a retry must not turn into a second SMS."""
        with self._state.lock:
            self._state.delays.extend([seconds] * times)

    def hold_next(self, times: int = 1) -> None:
        """Take the next `times` create requests and never look at them: not recorded,
        not answered, their connection open until the fake stops. As a request lost on
        its way to Twilio: the client cannot tell it from a lost answer, but no SMS went
        out. Each still counts in `requests`; `wait_for_held` says when it arrived."""
        with self._state.lock:
            self._state.holds += times

    def wait_for_held(self, count: int, timeout: float = 10) -> None:
        """Block until at least `count` creates were held (hold_next); TimeoutError if not."""
        with self._state.lock:
            if not self._state.lock.wait_for(lambda: self._state.held >= count, timeout):
                raise TimeoutError(
                    f"{self._state.held} request(s) held within {timeout} s, expected {count}"
                )

    def on_message(self, callback: Callable[[SentMessage], None]) -> None:
        """Call `callback` in the server's thread when a create is accepted, before the
        response goes out. If it raises, the connection drops without a response (the
        message stays accepted), as when the reply is lost on the way back."""
        with self._state.lock:
            self._state.listeners.append(callback)

    # -- webhooks the fake sends -----------------------------------------------------

    def status_callback_form(
        self, sid: str, status: str, error_code: int | None = None
    ) -> dict[str, str]:
        """The form Twilio posts to a Message's StatusCallback for this status."""
        with self._state.lock:
            record = self._state.records[sid]
            form = {
                "MessageSid": record.sid,
                "SmsSid": record.sid,
                "AccountSid": self.account_sid,
                "From": record.from_ or SERVICE_SENDER,
                "To": record.to,
                "MessageStatus": status,
                "SmsStatus": status,
                "ApiVersion": API_VERSION,
            }
            if record.messaging_service_sid is not None:
                form["MessagingServiceSid"] = record.messaging_service_sid
            if error_code is not None:
                form["ErrorCode"] = str(error_code)
            return form

    def send_status_callback(
        self, sid: str, status: str, error_code: int | None = None, *, forge: bool = False
    ) -> int:
        """Move the Message to `status` and POST Twilio's status callback for it to the
        URL the create named, signed (badly when `forge`); the HTTP status answered."""
        with self._state.lock:
            record = self._state.records.get(sid)
            if record is None or record.status_callback is None:
                raise ValueError(f"message {sid} does not exist or has no StatusCallback")
            record.status = status
            record.error_code = error_code
            record.updated_at = time.time()
            url = record.status_callback
        status_code, _ = self._post_webhook(
            url, self.status_callback_form(sid, status, error_code), forge=forge
        )
        return status_code

    def send_inbound(
        self, url: str, from_: str, to: str, body: str, *, forge: bool = False
    ) -> tuple[int, str]:
        """POST an incoming SMS to `url` as Twilio does, signed (badly when `forge`), and
        keep it as an inbound Message; the HTTP status and body (TwiML) answered."""
        sid = new_sid("SM")
        now = time.time()
        with self._state.lock:
            self._state.records[sid] = _Record(
                sid=sid,
                direction="inbound",
                to=to,
                from_=from_,
                messaging_service_sid=None,
                body=body,
                status="received",
                created_at=now,
                updated_at=now,
            )
        form = {
            "MessageSid": sid,
            "SmsMessageSid": sid,
            "SmsSid": sid,
            "AccountSid": self.account_sid,
            "From": from_,
            "To": to,
            "Body": body,
            "NumMedia": "0",
            "NumSegments": str(_segments(body)),
            "SmsStatus": "received",
            "ApiVersion": API_VERSION,
        }
        return self._post_webhook(url, form, forge=forge)

    def sign(self, url: str, params: dict[str, str], *, forge: bool = False) -> str:
        """The X-Twilio-Signature for posting `params` to `url` (for in-process clients
        such as a TestClient); with `forge`, one made with the wrong key."""
        key = self.auth_token + "-forged" if forge else self.auth_token
        return sign(key, url, params)

    def _post_webhook(self, url: str, form: dict[str, str], *, forge: bool) -> tuple[int, str]:
        request = urllib.request.Request(
            url,
            data=urlencode(form).encode(),
            method="POST",
            headers={
                "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
                "User-Agent": "TwilioProxy/1.1",
                "X-Twilio-Signature": self.sign(url, form, forge=forge),
            },
        )
        # No proxies: the receiver is local, whatever the environment says.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=WEBHOOK_TIMEOUT_S) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    # -- the API ---------------------------------------------------------------------

    def _handle(self, handler: _Handler, method: str) -> None:
        path, _, query = handler.path.partition("?")
        route = _ROUTE.match(path)
        if route is None:
            handler.send_json(404, _error_body(self._not_found(path)))
            return
        is_create = method == "POST" and route["sid"] is None
        if is_create:
            with self._state.lock:
                self._state.requests += 1
        if not self._authenticated(handler):
            handler.send_json(401, _error_body(_Failure(401, 20003, "Authenticate")))
            return
        if route["account"] != self.account_sid:
            handler.send_json(404, _error_body(self._not_found(path)))
            return
        if is_create:
            self._create(handler)
        elif method == "GET" and route["sid"] is None:
            handler.send_json(200, self._list(path, parse_qs(query)))
        elif method == "GET":
            with self._state.lock:
                record = self._state.records.get(route["sid"])
                document = self._message_json(record) if record is not None else None
            if document is None:
                handler.send_json(404, _error_body(self._not_found(path)))
            else:
                handler.send_json(200, document)
        else:
            # Updating (canceling) and deleting Messages are not part of the fake.
            handler.send_json(405, _error_body(_Failure(405, 20004, "Method not allowed")))

    def _authenticated(self, handler: _Handler) -> bool:
        scheme, _, encoded = (handler.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(user, self.account_sid) & hmac.compare_digest(
            password, self.auth_token
        )

    @staticmethod
    def _not_found(path: str) -> _Failure:
        return _Failure(404, 20404, f"The requested resource {path} was not found")

    def _create(self, handler: _Handler) -> None:
        with self._state.lock:
            hold = self._state.holds > 0
            if hold:
                self._state.holds -= 1
                self._state.held += 1
                self._state.lock.notify_all()
        if hold:
            # Returning without a response closes the connection, once the fake stops.
            self._stopping.wait()
            return
        received_at = time.time()
        length = int(handler.headers.get("Content-Length") or 0)
        fields = parse_qs(handler.rfile.read(length).decode(), keep_blank_values=True)
        form = {name: values[0] for name, values in fields.items()}
        with self._state.lock:
            injected = self._state.failures.popleft() if self._state.failures else None
            delay = self._state.delays.popleft() if self._state.delays else 0.0
        status, document, accepted = self._accept(form, received_at, injected)
        if accepted is not None:
            with self._state.lock:
                listeners = list(self._state.listeners)
            for listener in listeners:
                listener(accepted)
        if delay:
            self._stopping.wait(delay)
        handler.send_json(status, document)

    def _accept(
        self, form: dict[str, str], received_at: float, injected: _Failure | None
    ) -> tuple[int, dict[str, Any], SentMessage | None]:
        """Twilio's checks in order; the response and, when accepted, the record."""
        failure = injected or self._invalid(form)
        if failure is not None:
            return failure.status, _error_body(failure), None
        to = form["To"]
        with self._state.lock:
            permanent = self._state.failing_numbers.get(to)
        if permanent is not None:
            return permanent.status, _error_body(permanent), None

        service_sid = form.get("MessagingServiceSid") or None
        validity = form.get("ValidityPeriod", "")
        sent = SentMessage(
            sid=new_sid("SM"),
            to=to,
            from_=form.get("From") or None,
            messaging_service_sid=service_sid,
            body=form["Body"],
            status_callback=form.get("StatusCallback") or None,
            validity_period=int(validity) if validity.isdigit() else None,
            received_at=received_at,
            form=form,
        )
        record = _Record(
            sid=sent.sid,
            direction="outbound-api",
            to=to,
            from_=sent.from_,
            messaging_service_sid=service_sid,
            body=sent.body,
            status="accepted" if service_sid else "queued",
            created_at=received_at,
            updated_at=received_at,
            status_callback=sent.status_callback,
        )
        with self._state.lock:
            self._state.sent.append(sent)
            self._state.records[sent.sid] = record
            document = self._message_json(record)
            self._state.lock.notify_all()
        return 201, document, sent

    @staticmethod
    def _invalid(form: dict[str, str]) -> _Failure | None:
        # Twilio's documented errors for a create's parameters (docs/api/errors/<code>).
        to = form.get("To", "")
        if not to:
            return _Failure(400, 21604, "A 'To' phone number is required.")
        if not form.get("From") and not form.get("MessagingServiceSid"):
            # Both may be given: the docs of 21603 allow MessagingServiceSid "either
            # instead of or in addition to" From.
            return _Failure(
                400,
                21603,
                "A 'From' or 'MessagingServiceSid' parameter is required to send a message.",
            )
        if not form.get("Body"):
            return _Failure(400, 21602, "Message body is required.")
        if len(form["Body"]) > MAX_BODY_CHARS:
            return _Failure(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        service_sid = form.get("MessagingServiceSid")
        if service_sid and not _SERVICE_SID.match(service_sid):
            return _Failure(400, 21705, "The Messaging Service is invalid")
        if not _E164.match(to):
            return _Failure(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        return None

    def _message_json(self, record: _Record) -> dict[str, Any]:
        """The Message resource's JSON. Call with the lock held."""
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{record.sid}"
        fresh = record.status in _PENDING
        via_service = record.messaging_service_sid is not None
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": record.body,
            "date_created": _rfc2822(record.created_at),
            # Not sent yet while pending (Twilio answers a create with null here).
            "date_sent": None if fresh else _rfc2822(record.created_at),
            "date_updated": _rfc2822(record.updated_at),
            "direction": record.direction,
            "error_code": record.error_code,
            "error_message": None,
            # A Messaging Service picks its sender after accepting the Message.
            "from": record.from_ or (None if fresh else SERVICE_SENDER),
            "messaging_service_sid": record.messaging_service_sid,
            "num_media": "0",
            # "Initially 0" for a Messaging Service, until it picks a sender.
            "num_segments": "0" if via_service and fresh else str(_segments(record.body)),
            "price": None,
            "price_unit": "USD",
            "sid": record.sid,
            "status": record.status,
            "subresource_uris": {
                "media": f"{uri}/Media.json",
                "feedback": f"{uri}/Feedback.json",
            },
            "to": record.to,
            "uri": f"{uri}.json",
        }

    def _list(self, path: str, query: dict[str, list[str]]) -> dict[str, Any]:
        """One page of Messages, newest first, with Twilio's paging fields.

        The DateSent filters compare against the creation time, so a Message still
        pending (date_sent null) is found too: to the fake, accepted means sent."""
        filters: dict[str, str] = {
            name: query[name][0]
            for name in ("To", "From", "DateSent", "DateSent<", "DateSent>")
            if name in query
        }
        page_size = min(int(query.get("PageSize", [DEFAULT_PAGE_SIZE])[0]), MAX_PAGE_SIZE)
        page = int(query.get("Page", ["0"])[0])

        def matches(record: _Record) -> bool:
            sent_at = float(int(record.created_at))
            checks = (
                ("To", lambda v: record.to == v),
                ("From", lambda v: (record.from_ or SERVICE_SENDER) == v),
                # The SDK sends a datetime, the docs speak of a day: match the GMT day.
                ("DateSent", lambda v: _within(sent_at, *_parse_date_filter(v[:10]))),
                # `DateSent>` is what the SDK sends for date_sent_after; on the wire it
                # reads `DateSent>=...`: on or after. `DateSent<` likewise: on or before.
                ("DateSent>", lambda v: sent_at >= _parse_date_filter(v)[0]),
                ("DateSent<", lambda v: sent_at < _parse_date_filter(v)[1]),
            )
            return all(check(filters[name]) for name, check in checks if name in filters)

        with self._state.lock:
            chosen = [r for r in self._state.records.values() if matches(r)]
            chosen.sort(key=lambda r: r.created_at, reverse=True)
            start = page * page_size
            documents = [self._message_json(r) for r in chosen[start : start + page_size]]
            more = len(chosen) > start + page_size

        def page_uri(number: int) -> str:
            params: dict[str, str] = {**filters, "PageSize": str(page_size), "Page": str(number)}
            if number > 0:
                # Twilio's next pages carry a PageToken; the fake only echoes one.
                params["PageToken"] = f"PA{number}"
            return f"{path}?{urlencode(params)}"

        return {
            "end": start + max(len(documents) - 1, 0),
            "first_page_uri": page_uri(0),
            "messages": documents,
            "next_page_uri": page_uri(page + 1) if more else None,
            "page": page,
            "page_size": page_size,
            "previous_page_uri": page_uri(page - 1) if page > 0 else None,
            "start": start,
            "uri": page_uri(page),
        }


def _within(moment: float, start: float, end: float) -> bool:
    return start <= moment < end


__all__ = ["DEFAULT_ACCOUNT_SID", "DEFAULT_AUTH_TOKEN", "FakeTwilio", "SentMessage", "sign"]
