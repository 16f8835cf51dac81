"""`python -m listener`: run the DICOM listener until SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from broker import make_celery
from db.session import make_engine, make_session_factory
from listener.guard import ListenerConfigError
from listener.jobs import ListenerUserMissing
from listener.scp import Listener
from settings import Settings


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    settings = Settings.from_env()
    sessions = make_session_factory(make_engine(settings.database_url))
    try:
        listener = Listener(settings, sessions, make_celery(settings))
    except (ListenerUserMissing, ListenerConfigError) as error:
        logging.critical("radbatch DICOM listener cannot start: %s", error)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server = listener.serve(block=False)
    logging.info("listening as %s on %s:%d", settings.dicom_aet, *server.server_address[:2])
    stop.wait()
    listener.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
