"""Program operations in the browser: the adherence worklist (patients whose period will
not reach 16 days), the time logged on a patient (a stopwatch, or minutes with a note;
shown with the billing periods on the patient's page), and the monthly time report with
its CSV.

Reads and changes go through the API's own functions (`rpm.api.program`), so the pages
see, refuse and audit exactly as `/api/v1` does. The forms post normally and come back
to the patient's page (a refusal is a page saying why).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from rpm.api.deps import Conn, Offset
from rpm.api.program import (
    MONTH_PATTERN,
    ReportMonth,
    add_time,
    parse_month,
    read_at_risk,
    read_time_report,
    read_time_report_page,
    stop_time,
    time_report_csv_response,
    void_entry,
)
from rpm.program.periods import Month
from rpm.web.deps import (
    PREFIX,
    BrowserAudit,
    BrowserLogsTime,
    BrowserReadsPatients,
    BrowserReadsProgramReports,
    render,
)

router = APIRouter(prefix=PREFIX, include_in_schema=False)

# Patients a report page shows: a screenful to scan, and a page that renders at once
# (a programme's month is 100,000 rows; the CSV has them all).
REPORT_PAGE_SIZE = 100


@router.get("/adherence")
async def adherence_page(
    request: Request,
    conn: Conn,
    user: BrowserReadsPatients,
    record: BrowserAudit,
    offset: Offset = 0,
) -> Response:
    """Active patients at risk of fewer than 16 days with readings this period, fewest
    days to spare first, a page at a time."""
    page = await read_at_risk(
        conn, user.principal, record, datetime.now(UTC), offset, REPORT_PAGE_SIZE
    )
    return render(
        request,
        user,
        "adherence.html",
        {"rows": page.patients, "page": page, "offset": offset},
    )


def _time_section(patient_id: int) -> str:
    return f"{PREFIX}/patients/{patient_id}#time"


@router.post("/patients/{patient_id}/time-logs")
async def log_time(
    conn: Conn,
    user: BrowserLogsTime,
    record: BrowserAudit,
    patient_id: int,
    minutes: Annotated[int, Form(ge=1, le=720)],
    note: Annotated[str, Form(min_length=1, max_length=2000)],
    interactive: Annotated[bool, Form()] = False,
) -> Response:
    """Minutes just spent (they end now)."""
    now = datetime.now(UTC)
    await add_time(
        conn, user.principal, record, patient_id, now - timedelta(minutes=minutes), now,
        interactive, note.strip(),
    )  # fmt: skip
    return RedirectResponse(_time_section(patient_id), 303)


@router.post("/patients/{patient_id}/time-logs/stopwatch")
async def start_stopwatch(
    conn: Conn,
    user: BrowserLogsTime,
    record: BrowserAudit,
    patient_id: int,
    note: Annotated[str, Form(max_length=2000)] = "",
    interactive: Annotated[bool, Form()] = False,
) -> Response:
    await add_time(
        conn, user.principal, record, patient_id, datetime.now(UTC), None, interactive,
        note.strip(),
    )  # fmt: skip
    return RedirectResponse(_time_section(patient_id), 303)


@router.post("/patients/{patient_id}/time-logs/{log_id}/stop")
async def stop_stopwatch(
    conn: Conn,
    user: BrowserLogsTime,
    record: BrowserAudit,
    patient_id: int,
    log_id: int,
    interactive: Annotated[bool, Form()] = False,
) -> Response:
    """Stopped; ticking the box marks the time as including an interactive
    communication (an unticked box leaves it as said at the start)."""
    await stop_time(conn, user.principal, record, patient_id, log_id, interactive or None)
    return RedirectResponse(_time_section(patient_id), 303)


@router.post("/patients/{patient_id}/time-logs/{log_id}/void")
async def void_time(
    conn: Conn,
    user: BrowserLogsTime,
    record: BrowserAudit,
    patient_id: int,
    log_id: int,
    reason: Annotated[str, Form(min_length=1, max_length=1000)],
) -> Response:
    await void_entry(conn, user.principal, record, patient_id, log_id, reason.strip())
    return RedirectResponse(_time_section(patient_id), 303)


def _this_month() -> str:
    return str(Month.of(datetime.now(UTC).date()))


@router.get("/reports/time")
async def time_report_page(
    request: Request,
    conn: Conn,
    user: BrowserReadsProgramReports,
    record: BrowserAudit,
    month: Annotated[str | None, Query(pattern=MONTH_PATTERN)] = None,
    after: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """Every patient's time in a month and the codes it supports (default: this month),
    a page of patients at a time."""
    month = month or _this_month()
    page = await read_time_report_page(conn, user.principal, record, month, after, REPORT_PAGE_SIZE)
    return render(
        request,
        user,
        "time_report.html",
        {"page": page, "rows": page.patients, "month": page.month, "after": after},
    )


@router.get("/reports/time.csv")
async def time_report_csv(
    conn: Conn, user: BrowserReadsProgramReports, record: BrowserAudit, month: ReportMonth
) -> Response:
    rows = await read_time_report(conn, user.principal, record, parse_month(month))
    return time_report_csv_response(rows, month)
