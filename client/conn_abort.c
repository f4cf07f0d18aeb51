/*
 * conn_abort.c — makes a call that is blocked on a connection return, from
 * another thread, when the server no longer answers.
 *
 * PQcancel asks the server to stop the running statement, which does not
 * help when the server (or the path to it) is gone: a backend stopped with
 * SIGSTOP, a host that vanished without closing the TCP connection.  Then
 * the only way out for a thread blocked in libpq is to shut the socket
 * down: its poll() wakes, the read sees end of file, and libpq marks the
 * connection bad, so the pool discards it.  SQLite has no socket and its
 * sqlite3_interrupt is enough.
 *
 * This belongs in backend_pg.c as an op (it reads the first member of
 * backend_pg.c's pg_conn, the PGconn); it lives here until that file's
 * current rework is merged.
 */
#include <sys/socket.h>

#include <libpq-fe.h>

#include "internal.h"

void duet__conn_abort(duet_conn *c) {
    if (!c || !c->raw) return;
    if (c->ops != &duet__pg_ops) {
        c->ops->interrupt(c->raw);
        return;
    }
    PGconn *conn = *(PGconn **)c->raw; /* struct pg_conn begins with its PGconn */
    int fd = conn ? PQsocket(conn) : -1;
    if (fd >= 0) shutdown(fd, SHUT_RDWR);
}
