"""optuna-dashboard on a run's studies, opened from the run page of `research-loop serve`.

optuna-dashboard's page loads its scripts from absolute paths, so it cannot be mounted under a prefix of the
serve app; instead each run opened gets a server of its own on a free port of the same host, in a thread of
the serve process, closed when serve stops. It is optuna-dashboard's own WSGI app on the run's storage.
"""

from __future__ import annotations

import importlib.util
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from experiments import storage as storages


def installed() -> bool:
    return importlib.util.find_spec("optuna_dashboard") is not None


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """No access log: the terminal serve runs in shows its URL, not every request of the dashboard."""


class Dashboards:
    """One optuna-dashboard server per run, started on first use and reused after."""

    def __init__(self, host: str) -> None:
        self.host = host
        self._servers: dict[str, WSGIServer] = {}
        self._lock = threading.Lock()

    def port(self, run_id: str, storage_url: str) -> int:
        """The port of the run's dashboard, started now if it is not running; raises OSError or
        StorageUnavailable when it cannot be."""
        with self._lock:
            if run_id not in self._servers:
                import optuna_dashboard

                app = optuna_dashboard.wsgi(storages.open_storage(storage_url))
                server = make_server(self.host, 0, app, server_class=_Server, handler_class=_Quiet)
                threading.Thread(target=server.serve_forever, name=f"dashboard {run_id}", daemon=True).start()
                self._servers[run_id] = server
            return self._servers[run_id].server_port

    def close(self) -> None:
        with self._lock:
            for server in self._servers.values():
                server.shutdown()
                server.server_close()
            self._servers.clear()
