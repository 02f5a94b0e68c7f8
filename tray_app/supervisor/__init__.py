"""The supervisor: owns the proxy's server thread, restarts it, publishes a Status snapshot."""

from tray_app.supervisor.core import Backoff, Supervisor, find_free_port
from tray_app.supervisor.status import (
    Billing,
    Notice,
    ProxyState,
    QuotaWindow,
    SessionLine,
    SignIn,
    Status,
)

__all__ = [
    "Backoff",
    "Billing",
    "Notice",
    "ProxyState",
    "QuotaWindow",
    "SessionLine",
    "SignIn",
    "Status",
    "Supervisor",
    "find_free_port",
]
