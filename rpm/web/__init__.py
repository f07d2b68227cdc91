"""The web UI, server-rendered under /ui: the same core calls as the API's routes,
rendered as HTML (Jinja2) and enhanced with htmx, served with its scripts and styles from
this package (never a CDN). Signed in with a browser session's cookie, never a bearer
token; docs/access-control.md says why the API does not take the cookie."""
