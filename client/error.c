/*
 * error.c — the calling thread's last error.
 *
 * A pool is shared by threads, so errors cannot live on the duet_db handle
 * as they do on a PGconn: each thread keeps its own last error, like errno,
 * with the fields of PQresultErrorField that users act on.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define DUET_ERR_TEXT 1024

typedef struct duet_error_state {
    duet_status code;
    char sqlstate[6];
    char message[DUET_ERR_TEXT];
    char detail[DUET_ERR_TEXT];
    char hint[DUET_ERR_TEXT];
} duet_error_state;

static _Thread_local duet_error_state err_state;

static void copy_field(char *dst, size_t size, const char *src) {
    snprintf(dst, size, "%s", src ? src : "");
}

duet_status duet__err(duet_status code, const char *fmt, ...) {
    va_list ap;
    err_state.code = code;
    err_state.sqlstate[0] = err_state.detail[0] = err_state.hint[0] = '\0';
    va_start(ap, fmt);
    vsnprintf(err_state.message, sizeof err_state.message, fmt, ap);
    va_end(ap);
    return code;
}

/*
 * The arguments may be the current error's own fields (a caller adding
 * context to the error it just got), so the new state is built aside first.
 */
duet_status duet__err_full(duet_status code, const char *sqlstate, const char *message,
                           const char *detail, const char *hint) {
    duet_error_state next;
    next.code = code;
    copy_field(next.sqlstate, sizeof next.sqlstate, sqlstate);
    copy_field(next.message, sizeof next.message, message);
    copy_field(next.detail, sizeof next.detail, detail);
    copy_field(next.hint, sizeof next.hint, hint);
    err_state = next;
    return code;
}

void duet__err_clear(void) {
    err_state.code = DUET_OK;
    err_state.sqlstate[0] = err_state.message[0] = '\0';
    err_state.detail[0] = err_state.hint[0] = '\0';
}

duet_status duet_errcode(void) { return err_state.code; }
const char *duet_errmsg(void) { return err_state.message; }
const char *duet_errsqlstate(void) { return err_state.sqlstate; }
const char *duet_errdetail(void) { return err_state.detail; }
const char *duet_errhint(void) { return err_state.hint; }

duet_status duet__status_from_sqlstate(const char *s) {
    if (!s || strlen(s) != 5) return DUET_ERR_DATABASE;
    if (strncmp(s, "23", 2) == 0) return DUET_ERR_INTEGRITY;
    if (strncmp(s, "08", 2) == 0) return DUET_ERR_CONNECTION;
    if (strcmp(s, "57P01") == 0 || strcmp(s, "57P02") == 0 || strcmp(s, "57P03") == 0)
        return DUET_ERR_CONNECTION;
    if (strcmp(s, "40001") == 0 || strcmp(s, "40P01") == 0) return DUET_ERR_SERIALIZATION;
    if (strcmp(s, "57014") == 0 || strcmp(s, "55P03") == 0 || strcmp(s, "25P03") == 0)
        return DUET_ERR_TIMEOUT; /* query canceled, lock not available, idle txn timeout */
    if (strncmp(s, "42", 2) == 0) return DUET_ERR_SYNTAX;
    if (strcmp(s, "0A000") == 0) return DUET_ERR_UNSUPPORTED;
    return DUET_ERR_DATABASE;
}

const char *duet_status_name(duet_status status) {
    switch (status) {
    case DUET_OK: return "ok";
    case DUET_ERR_MISUSE: return "misuse";
    case DUET_ERR_CONFIG: return "configuration";
    case DUET_ERR_UNSUPPORTED: return "unsupported";
    case DUET_ERR_CONNECTION: return "connection";
    case DUET_ERR_TIMEOUT: return "timeout";
    case DUET_ERR_SYNTAX: return "syntax";
    case DUET_ERR_INTEGRITY: return "integrity";
    case DUET_ERR_NOT_FOUND: return "not found";
    case DUET_ERR_MULTIPLE_ROWS: return "multiple rows";
    case DUET_ERR_SERIALIZATION: return "serialization";
    case DUET_ERR_EXPIRED: return "expired";
    case DUET_ERR_DATABASE: return "database";
    case DUET_ERR_NO_MEMORY: return "out of memory";
    case DUET_ROW: return "row";
    case DUET_DONE: return "done";
    }
    return "unknown";
}
