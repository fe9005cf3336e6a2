"""Runs Punjab (converted to Python 3 by `start --install`) as a bench peer.

BOSH at http://127.0.0.1:PORT/http-bind. Every session goes to the XMPP
server at 127.0.0.1:XMPP_PORT, by IP, whatever the client's `to` (which still
names the XMPP domain in the stream header) or `route` says: without that,
Punjab would connect to the host named in `to`, looking up SRV records for
any name but `localhost` and resolving that one. Logs errors only, to stderr,
and no access log. Exits at once on SIGTERM or SIGINT.

    python run.py PORT XMPP_PORT PUNJAB_SRC_DIR
"""

import os
import signal
import sys


def main():
    port, xmpp_port, src = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    sys.path.insert(0, src)

    from twisted.logger import (FilteringLogObserver, LogLevel,
                                LogLevelFilterPredicate, globalLogBeginner,
                                textFileLogObserver)
    errors_only = LogLevelFilterPredicate(defaultLogLevel=LogLevel.error)
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(sys.stderr), [errors_only])],
        redirectStandardIO=False)

    from twisted.internet import reactor
    from twisted.web import resource, server

    from punjab import session
    from punjab.httpb import HttpbService

    upstream = "xmpp:127.0.0.1:%d" % xmpp_port

    def make_session(pint, attrs):
        # Punjab's own XEP-0124 `route` handling: a route makes it connect
        # to that host:port with connectTCP (no SRV), and an IP literal needs
        # no resolver. The client's own route, if any, is replaced.
        attrs = dict(attrs)
        attrs["route"] = upstream
        return session.make_session(pint, attrs)

    bosh = HttpbService(0, session_creator=make_session)
    root = resource.Resource()
    root.putChild(b"http-bind", resource.IResource(bosh))
    site = server.Site(root)
    site.log = lambda request: None  # no per-request access log
    # A listen backlog above Twisted's default of 50: the bench logs in
    # hundreds of sessions at once.
    reactor.listenTCP(port, site, backlog=1024, interface="127.0.0.1")
    # Stop at once on SIGTERM/SIGINT: Twisted's orderly shutdown walks every
    # session's error path (a logged traceback each, seconds for thousands of
    # sessions); there is nothing to save, the kernel closes the sockets.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: os._exit(0))
    reactor.run(installSignalHandlers=False)


if __name__ == "__main__":
    main()
