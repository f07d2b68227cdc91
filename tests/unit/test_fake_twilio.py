"""The Twilio fake, driven by the real twilio SDK over local HTTP (tests/fake_twilio.py).

Each feature the rest of the suite leans on is shown here with the SDK itself, so a
fake that drifted from what the SDK sends or expects fails here first."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import pytest
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import ReadTimeout
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from tests.fake_twilio import SERVICE_SENDER, FakeTwilio, SentMessage

SENDER = "+15005550006"
PATIENT = "+15005550010"
NURSE = "+15005550011"
SERVICE = "MG" + "ab" * 16
SID = re.compile(r"^SM[0-9a-f]{32}$")


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio() as running:
        yield running


def _client(fake: FakeTwilio, auth_token: str | None = None, timeout: float = 5) -> Any:
    client = Client(
        fake.account_sid,
        auth_token or fake.auth_token,
        http_client=TwilioHttpClient(timeout=timeout),
    )
    client.api.base_url = fake.base_url
    return client


@pytest.fixture
def client(fake: FakeTwilio) -> Any:
    return _client(fake)


class Receiver:
    """The app's side of Twilio's webhooks: a local HTTP server that checks each
    request's X-Twilio-Signature with the SDK's RequestValidator, as the app must."""

    def __init__(self, auth_token: str) -> None:
        self.validator = RequestValidator(auth_token)
        self.received: list[tuple[str, dict[str, str], bool]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                form = dict(parse_qsl(self.rfile.read(length).decode(), keep_blank_values=True))
                url = receiver.url + self.path
                valid = receiver.validator.validate(
                    url, form, self.headers.get("X-Twilio-Signature", "")
                )
                receiver.received.append((self.path, form, valid))
                if not valid:
                    status, body = 403, b"bad signature"
                elif self.path.startswith("/sms"):
                    status, body = 200, b"<Response><Message>Thanks</Message></Response>"
                else:
                    status, body = 204, b""
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(fake: FakeTwilio) -> Iterator[Receiver]:
    with Receiver(fake.auth_token) as running:
        yield running


def _raises(call: Any) -> TwilioRestException:
    with pytest.raises(TwilioRestException) as caught:
        call()
    return caught.value


# -- create ------------------------------------------------------------------------------


def test_the_sdk_sends_to_the_documented_path(fake: FakeTwilio, client: Any) -> None:
    message = client.messages.create(to=PATIENT, from_=SENDER, body="BP 182/121: call us")
    assert message.uri == f"/2010-04-01/Accounts/{fake.account_sid}/Messages/{message.sid}.json"
    assert SID.match(message.sid)


def test_create_with_a_from_number(fake: FakeTwilio, client: Any) -> None:
    before = time.time()
    message = client.messages.create(
        to=PATIENT,
        from_=SENDER,
        body="Your weight rose 2.1 kg in 2 days",
        status_callback="http://127.0.0.1:9/status",
        validity_period=600,
    )
    assert (message.status, message.direction) == ("queued", "outbound-api")
    assert (message.to, message.from_, message.messaging_service_sid) == (PATIENT, SENDER, None)
    assert message.body == "Your weight rose 2.1 kg in 2 days"
    assert message.account_sid == fake.account_sid
    assert message.date_sent is None  # not sent yet, as Twilio answers a create
    # The SDK parsed date_created from RFC 2822, so the format is right.
    assert abs(message.date_created.timestamp() - before) < 2
    assert message.num_segments == "1"

    [sent] = fake.messages
    assert sent == SentMessage(
        sid=message.sid,
        to=PATIENT,
        from_=SENDER,
        messaging_service_sid=None,
        body="Your weight rose 2.1 kg in 2 days",
        status_callback="http://127.0.0.1:9/status",
        validity_period=600,
        received_at=sent.received_at,
        form=sent.form,
    )
    assert before <= sent.received_at <= time.time()
    assert sent.form["ValidityPeriod"] == "600"
    assert fake.requests == 1


def test_create_with_a_messaging_service(fake: FakeTwilio, client: Any) -> None:
    message = client.messages.create(to=PATIENT, messaging_service_sid=SERVICE, body="Reminder")
    # Twilio's initial status for a Messaging Service is "accepted", with no sender yet.
    assert (message.status, message.from_, message.messaging_service_sid) == (
        "accepted",
        None,
        SERVICE,
    )
    assert message.num_segments == "0"
    [sent] = fake.messages
    assert (sent.from_, sent.messaging_service_sid) == (None, SERVICE)


def test_on_message_runs_before_the_response(fake: FakeTwilio, client: Any) -> None:
    seen: list[tuple[str, int]] = []
    fake.on_message(lambda sent: seen.append((sent.sid, len(fake.messages))))
    message = client.messages.create(to=PATIENT, from_=SENDER, body="hi")
    assert seen == [(message.sid, 1)]


def test_wait_for_blocks_until_enough_messages(fake: FakeTwilio, client: Any) -> None:
    sender = threading.Timer(
        0.2, lambda: client.messages.create(to=PATIENT, from_=SENDER, body="later")
    )
    sender.start()
    [sent] = fake.wait_for(1, timeout=5)
    assert sent.body == "later"
    sender.join()
    with pytest.raises(TimeoutError):
        fake.wait_for(2, timeout=0.1)


# -- failures ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (429, 20429, None),
        (500, 20500, None),
        (400, 21211, "The 'To' number +15005550010 is not a valid phone number."),
    ],
)
def test_fail_next_raises_twilios_error(
    fake: FakeTwilio, client: Any, status: int, code: int, message: str | None
) -> None:
    fake.fail_next(status, code, message, times=2)
    for _ in range(2):
        error = _raises(lambda: client.messages.create(to=PATIENT, from_=SENDER, body="x"))
        assert (error.status, error.code) == (status, code)
        if message is not None:
            assert message in error.msg
    # Then Twilio is back.
    client.messages.create(to=PATIENT, from_=SENDER, body="x")
    assert (fake.requests, len(fake.messages)) == (3, 1)


def test_fail_next_defaults_to_twilios_code_for_the_status(fake: FakeTwilio, client: Any) -> None:
    fake.fail_next(503)
    error = _raises(lambda: client.messages.create(to=PATIENT, from_=SENDER, body="x"))
    assert (error.status, error.code) == (503, 20503)
    assert "Service Unavailable" in error.msg


def test_fail_to_is_permanent_for_that_number(fake: FakeTwilio, client: Any) -> None:
    fake.fail_to(PATIENT, 400, 21610, "Attempt to send to unsubscribed recipient")
    for _ in range(3):
        error = _raises(lambda: client.messages.create(to=PATIENT, from_=SENDER, body="x"))
        assert (error.status, error.code) == (400, 21610)
        assert "unsubscribed" in error.msg
    client.messages.create(to=NURSE, from_=SENDER, body="x")
    assert [sent.to for sent in fake.messages] == [NURSE]
    assert fake.requests == 4


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"to": "", "from_": SENDER, "body": "x"}, 21604),
        ({"to": PATIENT, "body": "x"}, 21603),
        ({"to": PATIENT, "from_": SENDER}, 21602),
        ({"to": PATIENT, "from_": SENDER, "body": "x" * 1601}, 21617),
        ({"to": PATIENT, "messaging_service_sid": "MG123", "body": "x"}, 21705),
        ({"to": "5005550010", "from_": SENDER, "body": "x"}, 21211),
    ],
)
def test_invalid_creates_get_twilios_400(
    fake: FakeTwilio, client: Any, fields: dict[str, str], code: int
) -> None:
    error = _raises(lambda: client.messages.create(**fields))
    assert (error.status, error.code) == (400, code)
    assert (fake.requests, fake.messages) == (1, [])


def test_both_from_and_a_messaging_service_are_allowed(fake: FakeTwilio, client: Any) -> None:
    # Twilio's docs (error 21603): the service "instead of or in addition to" From.
    message = client.messages.create(
        to=PATIENT, from_=SENDER, messaging_service_sid=SERVICE, body="x"
    )
    assert (message.status, message.from_) == ("accepted", SENDER)


def test_wrong_credentials_get_401_20003(fake: FakeTwilio) -> None:
    wrong = _client(fake, auth_token="not-the-token")
    error = _raises(lambda: wrong.messages.create(to=PATIENT, from_=SENDER, body="x"))
    assert (error.status, error.code) == (401, 20003)
    # The SDK reports a failed list page as a plain TwilioException with the response.
    with pytest.raises(TwilioException) as caught:
        wrong.messages.list()
    [_, response] = caught.value.args
    assert (response.status_code, json.loads(response.text)["code"]) == (401, 20003)
    assert (fake.requests, fake.messages) == (1, [])


def test_delay_next_outlasts_a_client_timeout_but_the_message_is_sent(
    fake: FakeTwilio,
) -> None:
    impatient = _client(fake, timeout=0.3)
    fake.delay_next(2)
    started = time.monotonic()
    with pytest.raises(ReadTimeout):
        impatient.messages.create(to=PATIENT, from_=SENDER, body="sent, never acknowledged")
    assert time.monotonic() - started < 1.5
    # Twilio got it even though the client gave up: a blind retry would send it twice.
    [sent] = fake.wait_for(1)
    assert sent.body == "sent, never acknowledged"
    # Only the next request was delayed.
    impatient.messages.create(to=PATIENT, from_=SENDER, body="prompt")
    assert len(fake.messages) == 2


def test_hold_next_takes_a_request_but_neither_records_nor_answers_it(
    fake: FakeTwilio, client: Any
) -> None:
    fake.hold_next()
    errors: list[Exception] = []

    def send() -> None:
        try:
            client.messages.create(to=PATIENT, from_=SENDER, body="lost on the way")
        except Exception as exc:
            errors.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    fake.wait_for_held(1, timeout=5)
    sender.join(0.3)
    assert sender.is_alive()  # still waiting for an answer
    assert (fake.requests, fake.messages) == (1, [])
    # Only the next request was held.
    client.messages.create(to=PATIENT, from_=SENDER, body="prompt")
    assert [sent.body for sent in fake.messages] == ["prompt"]
    with pytest.raises(TimeoutError):
        fake.wait_for_held(2, timeout=0.1)
    # Stopping the fake hangs up on the held request; it was never accepted.
    fake.stop()
    sender.join(5)
    assert [type(error) for error in errors] == [RequestsConnectionError]
    assert [sent.body for sent in fake.messages] == ["prompt"]


# -- fetch and list ----------------------------------------------------------------------


def test_fetch_one_message(fake: FakeTwilio, client: Any) -> None:
    created = client.messages.create(to=PATIENT, from_=SENDER, body="hello")
    fetched = client.messages(created.sid).fetch()
    assert (fetched.sid, fetched.to, fetched.body, fetched.status) == (
        created.sid,
        PATIENT,
        "hello",
        "queued",
    )
    error = _raises(lambda: client.messages("SM" + "0" * 32).fetch())
    assert (error.status, error.code) == (404, 20404)


def test_list_filters_by_to_and_from(fake: FakeTwilio, client: Any) -> None:
    for to, body in ((PATIENT, "one"), (NURSE, "two"), (PATIENT, "three")):
        client.messages.create(to=to, from_=SENDER, body=body)
    client.messages.create(to=NURSE, messaging_service_sid=SERVICE, body="four")

    # Newest first, as Twilio lists them.
    assert [m.body for m in client.messages.list(to=PATIENT)] == ["three", "one"]
    assert [m.body for m in client.messages.list(to=NURSE, from_=SENDER)] == ["two"]
    assert len(client.messages.list()) == 4


def test_list_filters_by_date_sent(fake: FakeTwilio, client: Any) -> None:
    created = client.messages.create(to=PATIENT, from_=SENDER, body="x")
    at = created.date_created
    second = timedelta(seconds=1)
    # date_sent_after and _before are inclusive, to the second.
    assert len(client.messages.list(to=PATIENT, date_sent_after=at)) == 1
    assert client.messages.list(to=PATIENT, date_sent_after=at + second) == []
    assert len(client.messages.list(to=PATIENT, date_sent_before=at)) == 1
    assert client.messages.list(to=PATIENT, date_sent_before=at - second) == []
    # date_sent names a GMT day, whatever time of day the SDK's datetime carries.
    midnight = at.replace(hour=0, minute=0, second=0)
    assert len(client.messages.list(date_sent=midnight)) == 1
    assert client.messages.list(date_sent=midnight - timedelta(days=1)) == []


def test_list_pages_through_the_results(fake: FakeTwilio, client: Any) -> None:
    for n in range(5):
        client.messages.create(to=PATIENT, from_=SENDER, body=f"#{n}")
    page = client.messages.page(to=PATIENT, page_size=2)
    assert page._payload["page_size"] == 2
    assert page._payload["next_page_uri"].startswith(
        f"/2010-04-01/Accounts/{fake.account_sid}/Messages.json?To=%2B15005550010"
    )
    # The SDK follows next_page_uri on its own.
    assert [m.body for m in client.messages.list(to=PATIENT, page_size=2)] == [
        "#4",
        "#3",
        "#2",
        "#1",
        "#0",
    ]
    assert len(client.messages.list(limit=3)) == 3


# -- webhooks ----------------------------------------------------------------------------


def test_status_callback_is_signed_as_twilio_signs_it(
    fake: FakeTwilio, client: Any, receiver: Receiver
) -> None:
    # A query string is part of the signed URL: keep one to prove it.
    callback = f"{receiver.url}/status?alert=42"
    message = client.messages.create(to=PATIENT, from_=SENDER, body="x", status_callback=callback)
    assert fake.send_status_callback(message.sid, "sent") == 204
    assert fake.send_status_callback(message.sid, "undelivered", 30003) == 204

    [(path, sent, valid), (_, undelivered, valid_too)] = receiver.received
    assert (path, valid, valid_too) == ("/status?alert=42", True, True)
    assert sent == {
        "MessageSid": message.sid,
        "SmsSid": message.sid,
        "AccountSid": fake.account_sid,
        "From": SENDER,
        "To": PATIENT,
        "MessageStatus": "sent",
        "SmsStatus": "sent",
        "ApiVersion": "2010-04-01",
    }
    assert (undelivered["MessageStatus"], undelivered["ErrorCode"]) == ("undelivered", "30003")
    # The resource moved with its callbacks.
    fetched = client.messages(message.sid).fetch()
    assert (fetched.status, fetched.error_code) == ("undelivered", 30003)
    assert fetched.date_sent is not None


def test_forged_status_callback_is_rejected(
    fake: FakeTwilio, client: Any, receiver: Receiver
) -> None:
    message = client.messages.create(
        to=PATIENT, from_=SENDER, body="x", status_callback=f"{receiver.url}/status"
    )
    assert fake.send_status_callback(message.sid, "delivered", forge=True) == 403
    [(_, form, valid)] = receiver.received
    assert (form["MessageStatus"], valid) == ("delivered", False)


def test_status_callback_of_a_service_message_names_the_service(
    fake: FakeTwilio, client: Any, receiver: Receiver
) -> None:
    message = client.messages.create(
        to=PATIENT,
        messaging_service_sid=SERVICE,
        body="x",
        status_callback=f"{receiver.url}/status",
    )
    assert fake.send_status_callback(message.sid, "delivered") == 204
    [(_, form, valid)] = receiver.received
    assert valid
    assert (form["MessagingServiceSid"], form["From"]) == (SERVICE, SERVICE_SENDER)


def test_status_callback_needs_a_url(fake: FakeTwilio, client: Any) -> None:
    message = client.messages.create(to=PATIENT, from_=SENDER, body="x")
    with pytest.raises(ValueError, match="no StatusCallback"):
        fake.send_status_callback(message.sid, "delivered")


def test_inbound_sms_is_signed_and_listed(
    fake: FakeTwilio, client: Any, receiver: Receiver
) -> None:
    status, body = fake.send_inbound(f"{receiver.url}/sms", PATIENT, SENDER, "STOP")
    assert (status, body) == (200, "<Response><Message>Thanks</Message></Response>")
    [(_, form, valid)] = receiver.received
    assert valid
    assert SID.match(form["MessageSid"])
    assert {k: form[k] for k in ("From", "To", "Body", "NumMedia", "AccountSid")} == {
        "From": PATIENT,
        "To": SENDER,
        "Body": "STOP",
        "NumMedia": "0",
        "AccountSid": fake.account_sid,
    }
    [listed] = client.messages.list(from_=PATIENT)
    assert (listed.sid, listed.direction, listed.status) == (
        form["MessageSid"],
        "inbound",
        "received",
    )
    assert fake.messages == []  # inbound messages are not creates


def test_forged_inbound_sms_is_rejected(fake: FakeTwilio, receiver: Receiver) -> None:
    status, _ = fake.send_inbound(f"{receiver.url}/sms", PATIENT, SENDER, "YES", forge=True)
    assert status == 403
    [(_, _, valid)] = receiver.received
    assert not valid


def test_sign_matches_the_sdk_for_in_process_clients(fake: FakeTwilio) -> None:
    url = "https://rpm.example/twilio/status?x=1"
    form = {"MessageSid": "SM" + "1" * 32, "MessageStatus": "delivered"}
    validator = RequestValidator(fake.auth_token)
    assert validator.validate(url, form, fake.sign(url, form))
    assert not validator.validate(url, form, fake.sign(url, form, forge=True))
