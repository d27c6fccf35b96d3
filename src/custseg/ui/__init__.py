"""The dashboard the endpoint server serves at `/ui` (`custseg ui` opens it):
server-rendered pages with no scripts and nothing fetched from elsewhere.

Modules: `dashboard` (which page or form, who may see it), `session` (sign-in with the
API key, CSRF tokens), `http` (requests and responses), `layout` (the frame, tables,
forms; everything escaped), one module per page family (`overview`, `executions`,
`models` with approve and reject, `endpoints` with rollback), `traffic` (live rate and
latency from the server's counters) and `drift` (the monitor's results).
"""

from custseg.ui.dashboard import Dashboard

__all__ = ["Dashboard"]
