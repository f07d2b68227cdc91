"""Twilio's Messages API through the real `twilio` SDK: send one SMS, and find one that
was sent. Blocking calls (the SDK uses `requests`): the dispatcher runs them in a thread.

Each answer is sorted into what the outbox does next:
- `sent`: Twilio accepted it (its sid);
- `retry`: a transient refusal (429, 5xx): nothing was sent, try again later;
- `failed`: a permanent refusal (an invalid number, 21211, say): never retried;
- `unknown`: no answer (a timeout, a dropped connection). Twilio may have accepted it,
  so it is not retried blindly: the outbox reconciles it with `find_sent` first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import requests
from requests.adapters import HTTPAdapter
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from rpm.config import TwilioSettings

logger = logging.getLogger(__name__)

# Between our clock (when the row was claimed) and Twilio's (when it created the message).
CLOCK_SKEW = timedelta(minutes=2)


@dataclass(frozen=True)
class SendOutcome:
    kind: str  # sent | retry | failed | unknown
    sid: str | None = None
    code: int | None = None
    message: str = ""


class TwilioSms:
    def __init__(self, settings: TwilioSettings, connections: int = 10) -> None:
        """`connections`: as many as sends run at once (`RPM_ALERTS_SMS_SENDERS`); the
        SDK keeps 6 on 2 cores and opens (TLS handshake included) and drops any beyond."""
        self._settings = settings
        http = TwilioHttpClient(timeout=settings.timeout_s)
        assert http.session is not None
        for scheme in ("https://", "http://"):
            http.session.mount(scheme, HTTPAdapter(pool_maxsize=connections))
        self._client = Client(
            settings.account_sid, settings.auth_token.get_secret_value(), http_client=http
        )
        if settings.api_base_url:
            self._client.api.base_url = settings.api_base_url

    def send(self, to: str, body: str, validity_s: int, status_callback: str) -> SendOutcome:
        sender: dict[str, str] = (
            {"messaging_service_sid": self._settings.messaging_service_sid}
            if self._settings.messaging_service_sid
            else {"from_": self._settings.from_number}
        )
        try:
            message = self._client.messages.create(
                to=to,
                body=body,
                # Twilio drops it if still queued after this: a stale alert is not
                # delivered hours late.
                validity_period=max(1, validity_s),
                status_callback=status_callback,
                **sender,
            )
        except TwilioRestException as exc:
            transient = exc.status == 429 or exc.status >= 500
            return SendOutcome("retry" if transient else "failed", None, exc.code, exc.msg)
        except (requests.Timeout, requests.ConnectionError, TwilioException) as exc:
            return SendOutcome("unknown", message=f"no answer from Twilio: {type(exc).__name__}")
        return SendOutcome("sent", message.sid)

    def find_sent(self, to: str, body: str, since: datetime) -> str | None:
        """The sid of a message to this number with this text sent since then, if Twilio
        has one (the reconciliation of a send whose answer was lost)."""
        # Newest first; no DateSent filter, since a message still queued has no date sent.
        earliest = since - CLOCK_SKEW
        for message in self._client.messages.list(to=to, page_size=50, limit=200):
            if message.date_created is not None and message.date_created < earliest:
                break
            if message.body == body:
                return str(message.sid)
        return None
