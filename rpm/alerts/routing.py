"""Who hears of an alert, when, and in how many SMS: pure functions on plain data.

- `route`: an alert opened or got worse; SMS to the on-call nurse if its severity goes by
  SMS (the care plan's `notify.sms`, else the service's setting), and when it escalates.
- `escalate`: an open alert past its deadline goes to the next tier with someone on call
  (backup nurse, then physician); past the last tier, reminders until acknowledged.
- `plan_dispatch`: the due SMS of one dispatch round, per recipient, within the rate
  limit: a burst beyond it becomes one digest SMS that counts the alerts.
Quiet hours hold back all but critical SMS until the recipient's quiet hours end.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

CRITICAL = "critical"
_RANK = {"warning": 1, "high": 2, "critical": 3}


@dataclass(frozen=True)
class Recipient:
    staff_id: int
    phone: str
    time_zone: str
    quiet_hours_start: time | None = None
    quiet_hours_end: time | None = None


@dataclass(frozen=True)
class Policy:
    sms_severities: frozenset[str]
    # Per severity, how long an open alert waits for an acknowledgement before it goes
    # up a tier; absent: it never escalates.
    deadlines: Mapping[str, timedelta]
    reminder_interval: timedelta
    validity: timedelta
    rate_limit: int
    rate_window: timedelta


@dataclass(frozen=True)
class Outgoing:
    """A notification row to write."""

    staff_id: int
    to_phone: str
    purpose: str
    severity: str
    tier: int
    not_before: datetime
    expires_at: datetime


@dataclass(frozen=True)
class Routed:
    notifications: list[Outgoing]
    # The highest tier told, and when to escalate if nobody acknowledges (None: never).
    tier: int
    escalate_at: datetime | None


def route(
    severity: str,
    purpose: str,
    current_tier: int,
    plan_sms: Iterable[str] | None,
    on_call: Mapping[int, Recipient],
    now: datetime,
    policy: Policy,
) -> Routed:
    """An alert opened (`purpose` "opened") or its severity rose ("severity_raised")."""
    sms = frozenset(plan_sms) if plan_sms is not None else policy.sms_severities
    deadline = policy.deadlines.get(severity)
    escalate_at = now + deadline if deadline else None
    if severity not in sms:
        return Routed([], current_tier, escalate_at)
    tier = current_tier or min(on_call, default=0)
    recipient = on_call.get(tier)
    if recipient is None:  # nobody on call at any tier: the worklist, and escalation later
        return Routed([], current_tier, escalate_at)
    return Routed([_outgoing(recipient, purpose, severity, tier, now, policy)], tier, escalate_at)


def escalate(
    severity: str,
    current_tier: int,
    on_call: Mapping[int, Recipient],
    now: datetime,
    policy: Policy,
) -> tuple[str, Routed]:
    """An open alert past its deadline: ("escalated", to the next tier with someone on
    call) or, past the last, ("reminded", the highest tier reached, again)."""
    higher = sorted(tier for tier in on_call if tier > current_tier)
    deadline = policy.deadlines.get(severity) or policy.reminder_interval
    if higher:
        tier = higher[0]
        outgoing = _outgoing(on_call[tier], "escalated", severity, tier, now, policy)
        return "escalated", Routed([outgoing], tier, now + deadline)
    nearest = max((tier for tier in on_call if tier <= current_tier), default=None)
    if nearest is None:
        return "reminded", Routed([], current_tier, now + policy.reminder_interval)
    outgoing = _outgoing(on_call[nearest], "reminded", severity, nearest, now, policy)
    return "reminded", Routed([outgoing], current_tier, now + policy.reminder_interval)


def quiet_until(recipient: Recipient, severity: str, now: datetime) -> datetime | None:
    """When the recipient's quiet hours end, if they are in them now and the SMS can wait
    (a critical one never waits)."""
    if severity == CRITICAL:
        return None
    return quiet_hours_end(
        recipient.time_zone, recipient.quiet_hours_start, recipient.quiet_hours_end, now
    )


def quiet_hours_end(
    time_zone: str, start: time | None, end: time | None, now: datetime
) -> datetime | None:
    """When quiet hours (on that zone's clock) end, if `now` is inside them; else None.
    A patient's reminders keep the same hours as a care-team member's SMS."""
    if start is None or end is None or start == end:
        return None
    local = now.astimezone(ZoneInfo(time_zone))
    clock = local.time().replace(tzinfo=None)
    # Quiet hours may wrap past midnight (22:00 to 07:00).
    inside = start <= clock < end if start < end else clock >= start or clock < end
    if not inside:
        return None
    ends = datetime.combine(local.date(), end, tzinfo=local.tzinfo)
    if ends <= local:
        ends = datetime.combine(local.date() + timedelta(days=1), end, tzinfo=local.tzinfo)
    return ends


def _outgoing(
    recipient: Recipient, purpose: str, severity: str, tier: int, now: datetime, policy: Policy
) -> Outgoing:
    not_before = quiet_until(recipient, severity, now) or now
    return Outgoing(
        recipient.staff_id,
        recipient.phone,
        purpose,
        severity,
        tier,
        not_before,
        not_before + policy.validity,
    )


@dataclass(frozen=True)
class Due:
    """A pending notification whose time has come: about an alert, to a staff member, or
    an adherence reminder to a patient (`patient_id`, its text written in `body`)."""

    id: int
    staff_id: int | None
    to_phone: str
    alert_id: int | None
    severity: str
    expires_at: datetime
    # Sends tried so far, this one included (a retry's backoff grows with it).
    attempts: int = 1
    patient_id: int | None = None
    body: str | None = None

    @property
    def recipient(self) -> str:
        """Whose rate limit it counts in."""
        return recipient_key(self.staff_id, self.patient_id)


def recipient_key(staff_id: int | None, patient_id: int | None) -> str:
    return f"staff:{staff_id}" if staff_id is not None else f"patient:{patient_id}"


@dataclass(frozen=True)
class Send:
    """One SMS: for one notification (`counted` empty), or a digest carried by `id` that
    also counts `counted`."""

    id: int
    to_phone: str
    alert_id: int | None
    severity: str
    expires_at: datetime
    counted: tuple[int, ...] = ()
    critical: int = 0
    attempts: int = 1
    # A reminder's own text (its rows never make a digest: one waits per patient).
    body: str | None = None


@dataclass(frozen=True)
class Plan:
    sends: list[Send]
    expired: list[int]
    # Rows to hold back until a slot in the recipient's window frees.
    deferred: dict[int, datetime]


def plan_dispatch(
    due: Sequence[Due],
    sent_in_window: Mapping[str, Sequence[datetime]],
    now: datetime,
    policy: Policy,
) -> Plan:
    """What to send this round. Per recipient, most severe and oldest first: one SMS each
    while the window has room for more than one; the last free slot carries a digest of
    all that remain; with no room, everything waits for the window to free a slot."""
    sends: list[Send] = []
    expired = [d.id for d in due if d.expires_at <= now]
    deferred: dict[int, datetime] = {}
    by_recipient: dict[str, list[Due]] = defaultdict(list)
    for d in due:
        if d.expires_at > now:
            by_recipient[d.recipient].append(d)
    for recipient, waiting in by_recipient.items():
        waiting.sort(key=lambda d: (-_RANK[d.severity], d.id))
        recent = sorted(sent_in_window.get(recipient, ()))
        room = policy.rate_limit - len(recent)
        if room <= 0:
            frees_at = recent[-policy.rate_limit] + policy.rate_window
            deferred.update((d.id, frees_at) for d in waiting)
            continue
        singles = waiting if len(waiting) <= room else waiting[: room - 1]
        sends += [
            Send(
                d.id,
                d.to_phone,
                d.alert_id,
                d.severity,
                d.expires_at,
                attempts=d.attempts,
                body=d.body,
            )
            for d in singles
        ]
        rest = waiting[len(singles) :]
        if rest:
            carrier = rest[0]
            sends.append(
                Send(
                    carrier.id,
                    carrier.to_phone,
                    carrier.alert_id,
                    carrier.severity,
                    max(d.expires_at for d in rest),
                    tuple(d.id for d in rest[1:]),
                    sum(1 for d in rest if d.severity == CRITICAL),
                    carrier.attempts,
                )
            )
    return Plan(sends, expired, deferred)


def body(send: Send, sms_template: str, digest_template: str, public_url: str) -> str:
    """The SMS text: the alert's number, severity and a link; never patient data. A
    reminder's text was written with it. The link is the UI's page (a phone opens it,
    signing in first), not the API's, which answers a browser with a bare 401."""
    if send.body is not None:
        return send.body
    base = public_url.rstrip("/")
    if send.counted:
        return digest_template.format(
            count=len(send.counted) + 1, critical=send.critical, link=f"{base}/ui/worklist"
        )
    return sms_template.format(
        severity=send.severity, alert_id=send.alert_id, link=f"{base}/ui/alerts/{send.alert_id}"
    )
