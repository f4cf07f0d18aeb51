/*
 * pool.c — a duet_db: one named database, its pool of connections, and the
 * connections pinned to threads.
 *
 * The pool is a mutex, a list of every open connection, a stack of idle ones
 * (most recently used on top, so the surplus ages out under idle_timeout and
 * a connection used within the last half second can skip its liveness
 * check) and a FIFO queue of waiting threads.  Fairness comes from direct
 * hand-off: a returned connection, or a free slot to open one, goes to the
 * thread at the head of the queue and never back to the free-for-all, and a
 * newcomer queues behind any waiter.
 *
 * One background thread per pool refills min_connections, closes idle and
 * old connections, warns about leaked ones and ends transactions older than
 * transaction_timeout.  It never runs SQL on a connection a caller is using:
 * it interrupts it (ops->interrupt) and lets the owner roll back.
 *
 * Pinning: a thread in a transaction, after duet_acquire, or holding a
 * connection handed over with duet_attach, keeps it in a thread-local list
 * keyed by (db, db->id); the id guards against a new duet_db allocated at a
 * freed one's address.  In force_rollback mode every call from every thread
 * goes to one connection, taken in turn (re-entrant for its holder), except
 * a transaction begun before it was switched on, which ends on its own.
 */
#define _GNU_SOURCE /* PTHREAD_MUTEX_ADAPTIVE_NP */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* A connection used this recently is trusted without a round trip (HikariCP's rule). */
#define TRUST_RECENT_MS 500.0
/*
 * The longest the pool waits for its own statements on a connection (a
 * rollback on return or by the reaper, a liveness check, an interrupted
 * call in an expired transaction) before it cuts the connection off
 * (the backend's abort op): a server that stopped answering must not hang anyone.
 */
#define RETURN_ROLLBACK_MS 5000.0
/* The background thread wakes at least this often. */
#define MAX_TICK_MS 1000.0
#define WAIT_BUCKETS 64

typedef struct duet_waiter {
    struct duet_waiter *next;
    pthread_cond_t cv;
    duet_conn *conn; /* handed over by a release */
    bool slot;       /* a slot reserved for this waiter: it opens a connection itself */
} duet_waiter;

/* Fields marked (mu) are guarded by the database's mutex; (owner) belong to the holder. */
struct duet_conn_pool {
    duet_conn *idle_next;           /* (mu) idle stack */
    duet_conn *all_prev, *all_next; /* (mu) every open connection */
    double created_ms;
    double retire_at_ms;      /* (mu) max_lifetime with jitter; 0 = never */
    double last_used_ms;      /* (mu) */
    double acquired_ms;       /* (mu) */
    double txn_start_ms;      /* (mu) outermost begin; 0 = no transaction clock */
    double watch_deadline_ms; /* (mu) cut the connection off after this (RETURN_ROLLBACK_MS) */
    char label[128];          /* (mu) who acquired it */
    bool in_use;              /* (mu) checked out */
    bool in_call;             /* (mu) its owner is running something on it */
    bool reaping;             /* (mu) the background thread is interrupting, cutting off or
                                 rolling it back: the owner waits before touching it */
    bool expired;             /* (mu) transaction_timeout ended its transaction */
    bool leak_warned;         /* (mu) */
    bool is_fr;               /* (mu) it is force_rollback's connection */
    bool broken;              /* (owner) a call saw the connection fail */
    bool retired_old;         /* closed by max_lifetime rather than idle_timeout */
    int pins;                 /* (owner) duet_acquire nesting */
    duet_txn_info txn;        /* (owner) txn.c's state */
};

struct duet_db {
    char *name;
    uint64_t id;
    duet_config *cfg;
    duet_config *cfg_nowal; /* SQLite files: without journal_mode, used after the first open */
    const duet_backend_ops *ops;
    void *keeper; /* SQLite :memory: — holds the shared database open for the pool's life */

    pthread_mutex_t mu;
    pthread_cond_t call_cv;  /* reaping done; force_rollback connection free */
    pthread_cond_t maint_cv; /* wakes the background thread */
    pthread_t maint;
    bool maint_started;
    bool closing;
    bool wal_done;

    duet_conn *all;
    duet_conn *idle;
    size_t slots; /* open + being opened: the max_connections cap */
    size_t nopen, nidle, nbusy;
    duet_waiter *wait_head, *wait_tail;
    size_t waiting;

    uint64_t acquired, timeouts, opened, closed;
    uint64_t wait_hist[WAIT_BUCKETS];
    double wait_max_ms;
    char last_connect_error[512]; /* "" after a successful connect */
    uint64_t rng;

    /* force_rollback */
    atomic_bool fr_on;
    duet_conn *fr_conn;
    pthread_t fr_owner;
    int fr_calls; /* the owner's calls in progress, plus its hold */
    int fr_held;  /* 1 while the owner has a program transaction open on it */
};

static atomic_uint_fast64_t next_db_id = 1;

/* ------------------------------------------------------------------ */
/* Small helpers                                                      */
/* ------------------------------------------------------------------ */

static void lock(duet_db *db) { pthread_mutex_lock(&db->mu); }
static void unlock(duet_db *db) { pthread_mutex_unlock(&db->mu); }

/* The pool's own statement on c must be over by until_ms; the background thread watches. */
static void watch_set(duet_db *db, duet_conn *c, double until_ms) { /* (mu) */
    c->pool_state->watch_deadline_ms = until_ms;
    pthread_cond_signal(&db->maint_cv); /* it may be asleep for longer than that */
}

/* Ends the watch; c stays alive while the background thread is still cutting it off. */
static void watch_end(duet_db *db, duet_conn *c) { /* (mu) */
    c->pool_state->watch_deadline_ms = 0;
    while (c->pool_state->reaping) pthread_cond_wait(&db->call_cv, &db->mu);
}

static double rand_unit(duet_db *db) { /* (mu) xorshift64 */
    uint64_t x = db->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    db->rng = x;
    return (double)(x >> 11) / 9007199254740992.0;
}

/* The caller's error survives the cleanup a leave does after it. */
typedef struct saved_err {
    duet_status code;
    char sqlstate[6];
    char *message, *detail, *hint;
} saved_err;

static void err_save(saved_err *s) {
    s->code = duet_errcode();
    snprintf(s->sqlstate, sizeof s->sqlstate, "%s", duet_errsqlstate());
    s->message = strdup(duet_errmsg());
    s->detail = strdup(duet_errdetail());
    s->hint = strdup(duet_errhint());
}

static void err_restore(saved_err *s) {
    if (s->code == DUET_OK)
        duet__err_clear();
    else
        duet__err_full(s->code, s->sqlstate, s->message, s->detail, s->hint);
    free(s->message);
    free(s->detail);
    free(s->hint);
}

static bool is_broken_status(duet_status st) { return st == DUET_ERR_CONNECTION; }

/* ------------------------------------------------------------------ */
/* Thread-local pins                                                  */
/* ------------------------------------------------------------------ */

typedef struct duet_pin {
    duet_db *db;
    uint64_t db_id;
    duet_conn *conn;
    struct duet_pin *next;
} duet_pin;

static _Thread_local duet_pin *tls_pins;

static duet_pin *pin_find(duet_db *db) {
    for (duet_pin *p = tls_pins; p; p = p->next)
        if (p->db == db && p->db_id == db->id) return p;
    return NULL;
}

static void pin_remove(duet_db *db) {
    for (duet_pin **pp = &tls_pins; *pp; pp = &(*pp)->next) {
        if ((*pp)->db == db) { /* same address: ours, or a stale one of a closed db */
            duet_pin *p = *pp;
            *pp = p->next;
            free(p);
            return;
        }
    }
}

static duet_status pin_add(duet_db *db, duet_conn *c) {
    pin_remove(db); /* a stale entry for a db that lived at this address */
    duet_pin *p = malloc(sizeof *p);
    if (!p) return duet__err(DUET_ERR_NO_MEMORY, "out of memory");
    p->db = db;
    p->db_id = db->id;
    p->conn = c;
    p->next = tls_pins;
    tls_pins = p;
    return DUET_OK;
}

/* ------------------------------------------------------------------ */
/* Statistics                                                         */
/* ------------------------------------------------------------------ */

/* Buckets grow by sqrt(2) from 1 µs: bucket i holds waits near 2^(i/2) µs. */
static void record_wait(duet_db *db, double wait_ms) { /* (mu) */
    double us = wait_ms * 1000.0;
    int b = us < 1.0 ? 0 : (int)(2.0 * log2(us)) + 1;
    if (b >= WAIT_BUCKETS) b = WAIT_BUCKETS - 1;
    db->wait_hist[b]++;
    if (wait_ms > db->wait_max_ms) db->wait_max_ms = wait_ms;
}

static double wait_percentile(const duet_db *db, double q) { /* (mu) */
    uint64_t total = 0, seen = 0;
    for (int i = 0; i < WAIT_BUCKETS; i++) total += db->wait_hist[i];
    if (total == 0) return 0.0;
    uint64_t rank = (uint64_t)ceil(q * (double)total);
    if (rank < 1) rank = 1;
    for (int i = 0; i < WAIT_BUCKETS; i++) {
        seen += db->wait_hist[i];
        if (seen >= rank) {
            if (i == 0) return 0.0;
            double mid_us = pow(2.0, ((double)i - 0.5) / 2.0); /* geometric middle of the bucket */
            double v = mid_us / 1000.0;
            return v > db->wait_max_ms ? db->wait_max_ms : v;
        }
    }
    return db->wait_max_ms;
}

void duet_pool_stats_get(duet_db *db, duet_pool_stats *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!db) return;
    lock(db);
    out->size = db->nopen;
    out->idle = db->nidle;
    out->in_use = db->nbusy;
    out->waiting = db->waiting;
    out->acquired = db->acquired;
    out->timeouts = db->timeouts;
    out->opened = db->opened;
    out->closed = db->closed;
    out->wait_p50_ms = wait_percentile(db, 0.50);
    out->wait_p99_ms = wait_percentile(db, 0.99);
    out->wait_max_ms = db->wait_max_ms;
    unlock(db);
}

/* ------------------------------------------------------------------ */
/* Physical connections                                               */
/* ------------------------------------------------------------------ */

static const duet_config *connect_config(duet_db *db) {
    bool skip_wal;
    lock(db);
    skip_wal = db->wal_done && db->cfg_nowal;
    unlock(db);
    return skip_wal ? db->cfg_nowal : db->cfg;
}

/* Opens one connection, outside the mutex.  Records the connect error for timeout messages. */
static duet_status conn_open(duet_db *db, duet_conn **out) {
    duet_conn *c = calloc(1, sizeof *c);
    struct duet_conn_pool *ps = calloc(1, sizeof *ps);
    if (!c || !ps) {
        free(c);
        free(ps);
        return duet__err(DUET_ERR_NO_MEMORY, "out of memory");
    }
    duet_status st = db->ops->connect(connect_config(db), &c->raw);
    lock(db);
    if (st != DUET_OK) {
        snprintf(db->last_connect_error, sizeof db->last_connect_error, "%s", duet_errmsg());
    } else {
        db->last_connect_error[0] = '\0';
        db->wal_done = true;
    }
    unlock(db);
    if (st != DUET_OK) {
        free(c);
        free(ps);
        return st;
    }
    c->ops = db->ops;
    c->db = db;
    c->pool_state = ps;
    ps->created_ms = ps->last_used_ms = duet__now_ms();
    *out = c;
    duet__log(DUET_LOG_INFO, db->name, "connection opened");
    return DUET_OK;
}

/* Adds a freshly opened connection to the list of open ones (its slot is already counted). */
static void conn_link(duet_db *db, duet_conn *c) { /* (mu) */
    struct duet_conn_pool *ps = c->pool_state;
    double life = db->cfg->pool.max_lifetime_ms;
    /* Up to 5% earlier, so connections opened together do not all retire together. */
    ps->retire_at_ms = life > 0 ? ps->created_ms + life * (1.0 - 0.05 * rand_unit(db)) : 0;
    ps->all_prev = NULL;
    ps->all_next = db->all;
    if (db->all) db->all->pool_state->all_prev = c;
    db->all = c;
    db->nopen++;
    db->opened++;
}

static void conn_unlink(duet_db *db, duet_conn *c) { /* (mu) */
    struct duet_conn_pool *ps = c->pool_state;
    if (ps->all_prev)
        ps->all_prev->pool_state->all_next = ps->all_next;
    else
        db->all = ps->all_next;
    if (ps->all_next) ps->all_next->pool_state->all_prev = ps->all_prev;
    db->nopen--;
    db->closed++;
}

static void conn_free(duet_db *db, duet_conn *c, const char *why) {
    duet__log(DUET_LOG_INFO, db->name, "connection closed (%s)", why);
    db->ops->disconnect(c->raw);
    free(c->pool_state);
    free(c);
}

static void idle_push(duet_db *db, duet_conn *c) { /* (mu) */
    c->pool_state->idle_next = db->idle;
    db->idle = c;
    db->nidle++;
}

static duet_conn *idle_pop(duet_db *db) { /* (mu) */
    duet_conn *c = db->idle;
    db->idle = c->pool_state->idle_next;
    c->pool_state->idle_next = NULL;
    db->nidle--;
    return c;
}

/* ------------------------------------------------------------------ */
/* Waiting and hand-off                                               */
/* ------------------------------------------------------------------ */

static duet_waiter *waiter_dequeue_head(duet_db *db) { /* (mu) */
    duet_waiter *w = db->wait_head;
    if (w) {
        db->wait_head = w->next;
        if (!db->wait_head) db->wait_tail = NULL;
        w->next = NULL;
    }
    return w;
}

static void waiter_remove(duet_db *db, duet_waiter *w) { /* (mu) */
    duet_waiter *prev = NULL;
    for (duet_waiter *it = db->wait_head; it; prev = it, it = it->next) {
        if (it != w) continue;
        if (prev)
            prev->next = w->next;
        else
            db->wait_head = w->next;
        if (db->wait_tail == w) db->wait_tail = prev;
        w->next = NULL;
        return;
    }
}

/* A slot was freed (a connection closed or a connect failed): the head waiter gets it. */
static void slot_release(duet_db *db) { /* (mu) */
    duet_waiter *w = waiter_dequeue_head(db);
    if (w) {
        w->slot = true;
        pthread_cond_signal(&w->cv);
        return;
    }
    db->slots--;
    if (!db->closing) pthread_cond_signal(&db->maint_cv); /* refill to min_connections */
}

/* An open connection is free: the head waiter gets it, else it goes idle. */
static void conn_offer(duet_db *db, duet_conn *c, double now) { /* (mu) */
    duet_waiter *w = waiter_dequeue_head(db);
    c->pool_state->last_used_ms = now;
    if (w) {
        c->pool_state->in_use = true; /* stays counted in nbusy */
        w->conn = c;
        pthread_cond_signal(&w->cv);
        return;
    }
    c->pool_state->in_use = false;
    db->nbusy--;
    idle_push(db, c);
}

/*
 * The error of an acquire that ran out of time.  When connecting failed,
 * the server's reason is part of it (a bare "timed out" would hide
 * "connection refused"), and the code is DUET_ERR_CONNECTION if this
 * caller's own attempts failed.
 */
static duet_status acquire_error(duet_db *db, double waited_ms, bool own_failed) { /* (mu) */
    db->timeouts++;
    char conn_err[600] = "";
    if (db->last_connect_error[0])
        snprintf(conn_err, sizeof conn_err, "; last connect error: %s", db->last_connect_error);
    return duet__err(own_failed ? DUET_ERR_CONNECTION : DUET_ERR_TIMEOUT,
                     "pool \"%s\" timed out after %.0f ms waiting for a connection "
                     "(max_connections %d, %zu open, %zu in use, %zu waiting)%s",
                     db->name, waited_ms, db->cfg->pool.max_connections, db->nopen, db->nbusy,
                     db->waiting, conn_err);
}

/*
 * Queues the calling thread until a connection or a slot is handed to it,
 * or until_ms passes (then *conn and *slot stay unset).
 */
static void wait_turn(duet_db *db, double until_ms, duet_conn **conn, bool *slot) { /* (mu) */
    duet_waiter w;
    memset(&w, 0, sizeof w);
    if (duet__cond_init_monotonic(&w.cv) != 0) return;
    /* w lives on this stack only while queued: it is unlinked before returning */
    if (db->wait_tail)
        db->wait_tail->next = &w;
    else
        db->wait_head = &w; /* cppcheck-suppress autoVariables */
    db->wait_tail = &w;     /* cppcheck-suppress autoVariables */
    db->waiting++;
    struct timespec ts = duet__abs_time(until_ms);
    while (!w.conn && !w.slot && !db->closing) {
        if (pthread_cond_timedwait(&w.cv, &db->mu, &ts) == ETIMEDOUT) break;
    }
    if (!w.conn && !w.slot) waiter_remove(db, &w);
    db->waiting--;
    pthread_cond_destroy(&w.cv);
    *conn = w.conn;
    *slot = w.slot;
}

/* The connect error of the calling thread, with the pool named. */
static duet_status connect_error(duet_db *db, duet_status st) {
    char msg[1200];
    snprintf(msg, sizeof msg, "pool \"%s\" could not connect: %s", db->name, duet_errmsg());
    return duet__err_full(st, duet_errsqlstate(), msg, duet_errdetail(), duet_errhint());
}

static bool needs_test(duet_db *db, duet_conn *c, double now) { /* (mu) */
    return db->cfg->pool.test_before_acquire &&
           now - c->pool_state->last_used_ms > TRUST_RECENT_MS;
}

/* Opens a connection in a slot the caller holds; gives the slot up on failure. */
static duet_status open_in_slot(duet_db *db, duet_conn **out) { /* (mu), released meanwhile */
    unlock(db);
    duet_status st = conn_open(db, out);
    lock(db);
    if (st != DUET_OK) {
        slot_release(db);
        return st;
    }
    conn_link(db, *out);
    db->nbusy++;
    (*out)->pool_state->in_use = true;
    return DUET_OK;
}

/*
 * Checks an idle connection before handing it out.  A dead one is closed,
 * and its slot stays with the caller to open a replacement.
 */
static bool test_idle(duet_db *db, duet_conn *c, double deadline) { /* (mu), released meanwhile */
    /* A server that does not answer must not keep the caller past acquire_timeout. */
    double now = duet__now_ms();
    double until = deadline < now + RETURN_ROLLBACK_MS ? deadline : now + RETURN_ROLLBACK_MS;
    watch_set(db, c, until > now + 100.0 ? until : now + 100.0);
    unlock(db);
    bool alive = db->ops->txn_state(c->raw) != DUET_TXN_BROKEN && db->ops->ping(c->raw) == DUET_OK;
    lock(db);
    watch_end(db, c);
    if (alive) return true;
    conn_unlink(db, c);
    db->nbusy--;
    unlock(db);
    duet__log(DUET_LOG_WARNING, db->name, "replacing a dead connection: %s", duet_errmsg());
    conn_free(db, c, "dead");
    lock(db);
    return false;
}

static void checkout(duet_db *db, duet_conn *c, const char *label, double start_ms) { /* (mu) */
    struct duet_conn_pool *ps = c->pool_state;
    double now = duet__now_ms();
    ps->in_use = true;
    ps->acquired_ms = now;
    ps->leak_warned = false;
    ps->broken = false;
    const char *from = label ? label : "a query"; /* copied: the caller's may not outlive it */
    size_t n = strnlen(from, sizeof ps->label - 1);
    memcpy(ps->label, from, n); /* not snprintf: this runs on every acquire */
    ps->label[n] = '\0';
    db->acquired++;
    record_wait(db, now - start_ms);
}

/* Retry delays after a failed connect: 25 ms doubling up to 1 s. */
static double next_backoff(double prev) {
    return prev <= 0 ? 25.0 : prev >= 500.0 ? 1000.0 : prev * 2;
}

/*
 * Takes a connection from the pool: an idle one, a new one while under
 * max_connections, or the next one returned, first come first served.  A
 * failed connect is retried with backoff until acquire_timeout, so a
 * caller rides out a server restart shorter than that.
 */
static duet_status pool_acquire(duet_db *db, const char *label, duet_conn **out) {
    double start = duet__now_ms(), deadline = start + db->cfg->pool.acquire_timeout_ms;
    double retry_at = 0, backoff = 0;
    bool slot = false, connect_failed = false;
    duet_conn *c = NULL;
    duet_status st = DUET_OK;
    lock(db);
    for (;;) {
        if (db->closing) {
            st = duet__err(DUET_ERR_MISUSE, "pool \"%s\" is closing", db->name);
            break;
        }
        double now = duet__now_ms();
        if (slot) {
            slot = false;
            st = open_in_slot(db, &c);
            if (st == DUET_OK) break;
            if (st == DUET_ERR_CONFIG) { /* e.g. an unloadable extension: retrying cannot help */
                st = connect_error(db, st);
                break;
            }
            st = DUET_OK;
            connect_failed = true;
            backoff = next_backoff(backoff);
            retry_at = duet__now_ms() + backoff;
            continue;
        }
        /* after a failed connect, the next attempt waits for its backoff, not for the queue */
        bool may_open = db->slots < (size_t)db->cfg->pool.max_connections &&
                        (retry_at > 0 ? now >= retry_at && now < deadline : !db->wait_head);
        if (!db->wait_head && db->idle) {
            c = idle_pop(db);
            db->nbusy++;
            c->pool_state->in_use = true;
        } else if (may_open) {
            db->slots++;
            slot = true;
            continue;
        } else if (now >= deadline) {
            st = acquire_error(db, now - start, connect_failed);
            break;
        } else {
            wait_turn(db, retry_at > now && retry_at < deadline ? retry_at : deadline, &c, &slot);
            if (!c) continue; /* a slot to open, or time to look again */
        }
        if (!needs_test(db, c, now) || test_idle(db, c, deadline)) break;
        c = NULL;
        slot = true; /* the dead connection's slot: open its replacement */
    }
    if (st == DUET_OK) checkout(db, c, label, start);
    unlock(db);
    *out = st == DUET_OK ? c : NULL;
    return st;
}

/*
 * Rolls back a connection returned inside a transaction (the caller's error
 * survives it); a hung rollback is cut off by the background thread, and
 * the connection is then discarded as broken.
 */
static bool rollback_on_return(duet_db *db, duet_conn *c) {
    saved_err se;
    err_save(&se);
    lock(db);
    watch_set(db, c, duet__now_ms() + RETURN_ROLLBACK_MS);
    unlock(db);
    bool ok = db->ops->exec_simple(c->raw, "ROLLBACK") == DUET_OK &&
              db->ops->txn_state(c->raw) == DUET_TXN_IDLE;
    lock(db);
    watch_end(db, c);
    unlock(db);
    err_restore(&se);
    return ok;
}

/* Whether a returned connection can be reused, rolling it back first if it is dirty. */
static bool reusable(duet_db *db, duet_conn *c, duet_status status) {
    if (c->pool_state->broken || is_broken_status(status)) return false;
    duet_txn_state ts = db->ops->txn_state(c->raw);
    if (ts == DUET_TXN_IDLE) return true;
    return ts != DUET_TXN_BROKEN && rollback_on_return(db, c);
}

/*
 * Returns a connection: rolled back if dirty, closed if broken, past its
 * max_lifetime or the pool is closing, else handed to the next waiter.
 */
static void pool_release(duet_db *db, duet_conn *c, duet_status status) {
    struct duet_conn_pool *ps = c->pool_state;
    bool ok = reusable(db, c, status);
    const char *why = ok ? NULL : "broken";
    lock(db);
    double now = duet__now_ms();
    ps->txn_start_ms = 0;
    ps->expired = false;
    watch_end(db, c); /* one the reaper set on an interrupted call */
    if (ok && ps->retire_at_ms > 0 && now >= ps->retire_at_ms) why = "max_lifetime";
    if (ok && db->closing) why = "pool closing";
    if (!why) {
        conn_offer(db, c, now);
        unlock(db);
        return;
    }
    conn_unlink(db, c);
    db->nbusy--;
    slot_release(db);
    unlock(db);
    conn_free(db, c, why);
}

/* ------------------------------------------------------------------ */
/* The background thread                                              */
/* ------------------------------------------------------------------ */

static double maint_tick(const duet_db *db) {
    const duet_pool_settings *p = &db->cfg->pool;
    double t = MAX_TICK_MS;
    if (p->transaction_timeout_ms > 0 && p->transaction_cleanup_interval_ms < t)
        t = p->transaction_cleanup_interval_ms;
    if (p->idle_timeout_ms > 0 && p->idle_timeout_ms / 2 < t) t = p->idle_timeout_ms / 2;
    if (p->max_lifetime_ms > 0 && p->max_lifetime_ms / 2 < t) t = p->max_lifetime_ms / 2;
    if (p->leak_threshold_ms > 0 && p->leak_threshold_ms / 2 < t) t = p->leak_threshold_ms / 2;
    return t < 5.0 ? 5.0 : t;
}

/*
 * Interrupts what runs on c without holding the mutex (PQcancel opens a
 * connection of its own, which can take long), or with hard, cuts c off
 * (the backend's abort op).  The reaping flag keeps c alive meanwhile: its owner
 * waits for it before touching c again, so it cannot start another statement
 * before the interrupt has arrived; one that cannot arrive in time cuts c off.
 */
static void interrupt_unlocked(duet_db *db, duet_conn *c, bool hard) { /* (mu), released meanwhile */
    c->pool_state->reaping = true;
    unlock(db);
    if (hard || !db->ops->interrupt(c->raw, RETURN_ROLLBACK_MS)) db->ops->abort(c->raw);
    lock(db);
    c->pool_state->reaping = false;
    pthread_cond_broadcast(&db->call_cv);
}

typedef struct reap_job {
    duet_db *db;
    duet_conn *c;
    bool done; /* (mu) */
} reap_job;

static void *reap_job_main(void *arg) {
    reap_job *j = arg;
    j->db->ops->exec_simple(j->c->raw, "ROLLBACK");
    lock(j->db);
    j->done = true;
    pthread_cond_broadcast(&j->db->maint_cv);
    unlock(j->db);
    return NULL;
}

/*
 * Rolls back the transaction of a connection its owner is not using.  The
 * ROLLBACK runs on a helper thread so that this one can cut the connection
 * off after RETURN_ROLLBACK_MS: a server that stopped answering must hang
 * neither the background thread nor the owner, who waits for reaping.
 */
static void reap_rollback(duet_db *db, duet_conn *c) { /* (mu), released meanwhile */
    struct duet_conn_pool *ps = c->pool_state;
    reap_job job = {.db = db, .c = c};
    pthread_t th;
    ps->reaping = true;
    if (pthread_create(&th, NULL, reap_job_main, &job) != 0) {
        /* no thread to spare: the owner's next call rolls back (it gets DUET_ERR_EXPIRED) */
        ps->reaping = false;
        pthread_cond_broadcast(&db->call_cv);
        return;
    }
    struct timespec until = duet__abs_time(duet__now_ms() + RETURN_ROLLBACK_MS);
    while (!job.done) {
        if (pthread_cond_timedwait(&db->maint_cv, &db->mu, &until) != ETIMEDOUT) continue;
        duet__log(DUET_LOG_WARNING, db->name, "rollback of an expired transaction is hanging: "
                                              "cutting the connection off");
        unlock(db);
        c->ops->abort(c->raw); /* the helper's ROLLBACK returns with a connection error */
        lock(db);
        while (!job.done) pthread_cond_wait(&db->maint_cv, &db->mu);
    }
    unlock(db);
    pthread_join(th, NULL);
    lock(db);
    ps->reaping = false;
    pthread_cond_broadcast(&db->call_cv);
}

/*
 * Ends transactions open longer than transaction_timeout.  A connection in
 * a call is interrupted (its owner rolls back when the call returns); an
 * idle one is rolled back here.  Either way the owner's next call gets
 * DUET_ERR_EXPIRED, so nothing is silently committed.
 */
static void reap_expired(duet_db *db, double now) { /* (mu), released meanwhile */
    double limit = db->cfg->pool.transaction_timeout_ms;
again:
    for (duet_conn *c = db->all; c; c = c->pool_state->all_next) {
        struct duet_conn_pool *ps = c->pool_state;
        if (ps->txn_start_ms <= 0 || ps->expired || now - ps->txn_start_ms < limit) continue;
        ps->expired = true;
        duet__log(DUET_LOG_WARNING, db->name,
                  "transaction expired after %g s (connection acquired at %s): rolling it back",
                  limit / 1000.0, ps->label);
        if (ps->in_call) {
            /* a server that ignores the cancel gets the connection cut off (watch_deadlines) */
            watch_set(db, c, now + RETURN_ROLLBACK_MS);
            interrupt_unlocked(db, c, false);
            goto again; /* the list may have changed while unlocked */
        }
        reap_rollback(db, c);
        goto again; /* the list may have changed while unlocked */
    }
}

/* Cuts off connections whose pool statement (see watch_set) is past its deadline. */
static void watch_deadlines(duet_db *db, double now) { /* (mu), released meanwhile */
again:
    for (duet_conn *c = db->all; c; c = c->pool_state->all_next) {
        struct duet_conn_pool *ps = c->pool_state;
        if (ps->watch_deadline_ms > 0 && now >= ps->watch_deadline_ms) {
            ps->watch_deadline_ms = 0;
            duet__log(DUET_LOG_WARNING, db->name,
                      "the server has not answered in time (acquired at %s): cutting the "
                      "connection off", ps->label);
            interrupt_unlocked(db, c, true);
            goto again;
        }
    }
}

/* The earliest watch deadline, or 0. */
static double next_watch(const duet_db *db) { /* (mu) */
    double next = 0;
    for (duet_conn *c = db->all; c; c = c->pool_state->all_next) {
        double d = c->pool_state->watch_deadline_ms;
        if (d > 0 && (next == 0 || d < next)) next = d;
    }
    return next;
}

static void warn_leaks(duet_db *db, double now) { /* (mu) */
    double limit = db->cfg->pool.leak_threshold_ms;
    if (limit <= 0) return;
    for (duet_conn *c = db->all; c; c = c->pool_state->all_next) {
        struct duet_conn_pool *ps = c->pool_state;
        if (!ps->in_use || ps->leak_warned || ps->is_fr || now - ps->acquired_ms < limit) continue;
        ps->leak_warned = true;
        duet__log(DUET_LOG_WARNING, db->name,
                  "possible connection leak: held for %.1f s, acquired at %s",
                  (now - ps->acquired_ms) / 1000.0, ps->label);
    }
}

/* Closes idle connections past idle_timeout (down to min_connections) or max_lifetime. */
static void retire_idle(duet_db *db, double now) { /* (mu), released meanwhile */
    const duet_pool_settings *p = &db->cfg->pool;
    duet_conn *doomed = NULL;
    for (duet_conn **cp = &db->idle; *cp;) {
        duet_conn *c = *cp;
        struct duet_conn_pool *ps = c->pool_state;
        bool old = ps->retire_at_ms > 0 && now >= ps->retire_at_ms;
        bool idle = p->idle_timeout_ms > 0 && now - ps->last_used_ms >= p->idle_timeout_ms &&
                    db->slots > (size_t)p->min_connections;
        if (!old && !idle) {
            cp = &ps->idle_next;
            continue;
        }
        *cp = ps->idle_next;
        db->nidle--;
        conn_unlink(db, c);
        db->slots--;
        ps->idle_next = doomed;
        ps->retired_old = old; /* for the log line below */
        doomed = c;
    }
    if (!doomed) return;
    unlock(db);
    while (doomed) {
        duet_conn *c = doomed;
        doomed = c->pool_state->idle_next;
        conn_free(db, c, c->pool_state->retired_old ? "max_lifetime" : "idle_timeout");
    }
    lock(db);
}

/* Opens connections up to min_connections; stops at the first failure until the next tick. */
static void refill(duet_db *db) { /* (mu), released meanwhile */
    while (!db->closing && db->slots < (size_t)db->cfg->pool.min_connections) {
        duet_conn *c;
        db->slots++;
        unlock(db);
        duet_status st = conn_open(db, &c);
        lock(db);
        if (st != DUET_OK) {
            duet__log(DUET_LOG_WARNING, db->name, "cannot refill the pool: %s", duet_errmsg());
            slot_release(db); /* a waiter may try itself and get the server's reason */
            return;
        }
        conn_link(db, c);
        db->nbusy++; /* conn_offer counts it out again when it goes idle */
        conn_offer(db, c, duet__now_ms());
    }
}

static void *maint_main(void *arg) {
    duet_db *db = arg;
    double interval = db->cfg->pool.transaction_cleanup_interval_ms;
    double next_reap = duet__now_ms() + interval;
    lock(db);
    while (!db->closing) {
        double wake = duet__now_ms() + maint_tick(db), watch = next_watch(db);
        struct timespec ts = duet__abs_time(watch > 0 && watch < wake ? watch : wake);
        pthread_cond_timedwait(&db->maint_cv, &db->mu, &ts);
        if (db->closing) break;
        double now = duet__now_ms();
        if (db->cfg->pool.transaction_timeout_ms > 0 && now >= next_reap) {
            reap_expired(db, now);
            next_reap = now + interval;
        }
        watch_deadlines(db, now);
        warn_leaks(db, now);
        retire_idle(db, now);
        refill(db);
    }
    unlock(db);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Opening and closing                                                */
/* ------------------------------------------------------------------ */

/*
 * sqlite:///:memory: would give every connection its own private database.
 * The pool instead names one memdb database, unique to this pool, that all
 * its connections open; the keeper connection holds it for the pool's life.
 */
static duet_status setup_sqlite(duet_db *db) {
    duet_config *cfg = db->cfg;
    if (cfg->sqlite_path && strcmp(cfg->sqlite_path, ":memory:") == 0) {
        char name[96];
        snprintf(name, sizeof name, "file:/duet-%ld-%llu-%08x?vfs=memdb", (long)getpid(),
                 (unsigned long long)db->id, (unsigned)(db->rng & 0xffffffffu));
        free(cfg->sqlite_shared_name);
        cfg->sqlite_shared_name = strdup(name);
        if (!cfg->sqlite_shared_name) return duet__err(DUET_ERR_NO_MEMORY, "out of memory");
        duet_status st = db->ops->connect(cfg, &db->keeper);
        if (st != DUET_OK) return connect_error(db, st);
        return DUET_OK;
    }
    /* WAL, unlike the other journal modes, is a property of the file: set it once. */
    if (cfg->journal_mode && strcasecmp(cfg->journal_mode, "WAL") == 0) {
        db->cfg_nowal = duet__config_copy(cfg);
        if (!db->cfg_nowal) return duet__err(DUET_ERR_NO_MEMORY, "out of memory");
        free(db->cfg_nowal->journal_mode);
        db->cfg_nowal->journal_mode = NULL;
    }
    return DUET_OK;
}

/*
 * The pool's critical sections are a few dozen instructions, taken by every
 * call: a short spin before sleeping saves a futex round trip under contention.
 */
static int mutex_init(pthread_mutex_t *mu) {
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
#ifdef PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
#endif
    int rc = pthread_mutex_init(mu, &attr);
    pthread_mutexattr_destroy(&attr);
    return rc;
}

static duet_db *db_alloc(const char *name, const duet_config *cfg) {
    duet_db *db = calloc(1, sizeof *db);
    if (!db) return NULL;
    db->name = strdup(name ? name : "default");
    db->cfg = duet__config_copy(cfg);
    if (!db->name || !db->cfg || mutex_init(&db->mu) != 0) {
        duet_config_free(db->cfg);
        free(db->name);
        free(db);
        return NULL;
    }
    duet__cond_init_monotonic(&db->call_cv); /* fr_wait_free waits with a deadline */
    duet__cond_init_monotonic(&db->maint_cv);
    db->id = atomic_fetch_add(&next_db_id, 1);
    db->rng = (db->id * 0x9E3779B97F4A7C15ull) ^ (uint64_t)(duet__now_ms() * 1000.0) ^
              (uint64_t)(uintptr_t)db;
    if (!db->rng) db->rng = 1;
    atomic_init(&db->fr_on, false);
    return db;
}

/*
 * Frees everything; the background thread must be stopped.  A transaction
 * still open is rolled back by closing its connection (the server, or
 * SQLite's close, does it), so closing never waits for a server.
 */
static void db_free(duet_db *db) {
    while (db->all) {
        duet_conn *c = db->all;
        conn_unlink(db, c);
        conn_free(db, c, "pool closed");
    }
    if (db->keeper) db->ops->disconnect(db->keeper);
    pthread_cond_destroy(&db->maint_cv);
    pthread_cond_destroy(&db->call_cv);
    pthread_mutex_destroy(&db->mu);
    duet_config_free(db->cfg_nowal);
    duet_config_free(db->cfg);
    free(db->name);
    free(db);
}

static duet_status check_settings(duet_db *db) {
    duet_pool_settings *p = &db->cfg->pool;
    if (p->max_connections < 1)
        return duet__err(DUET_ERR_CONFIG, "max_connections must be at least 1");
    if (p->min_connections < 0) p->min_connections = 0;
    if (p->min_connections > p->max_connections) p->min_connections = p->max_connections;
    if (p->transaction_cleanup_interval_ms <= 0) p->transaction_cleanup_interval_ms = 60000;
    return DUET_OK;
}

/* min_connections opened before duet_open returns, so a bad URL fails right there. */
static duet_status open_min(duet_db *db) {
    for (int i = 0; i < db->cfg->pool.min_connections; i++) {
        duet_conn *c;
        duet_status st = conn_open(db, &c);
        if (st != DUET_OK) return connect_error(db, st);
        lock(db);
        db->slots++;
        conn_link(db, c);
        idle_push(db, c);
        unlock(db);
    }
    return DUET_OK;
}

static duet_status open_fail(duet_db *db, duet_status st) {
    saved_err se;
    err_save(&se);
    duet_close(db);
    err_restore(&se);
    return st;
}

duet_status duet_open_config(const char *name, const duet_config *cfg, duet_db **out) {
    if (!out) return duet__err(DUET_ERR_MISUSE, "duet_open_config: out is NULL");
    *out = NULL;
    if (!cfg) return duet__err(DUET_ERR_MISUSE, "duet_open_config: cfg is NULL");
    if (cfg->backend != DUET_POSTGRESQL && cfg->backend != DUET_SQLITE)
        return duet__err(DUET_ERR_CONFIG, "the configuration names no backend (set scheme)");
    duet_db *db = db_alloc(name, cfg);
    if (!db) return duet__err(DUET_ERR_NO_MEMORY, "out of memory");
    db->ops = cfg->backend == DUET_POSTGRESQL ? &duet__pg_ops : &duet__sqlite_ops;
    duet_status st = check_settings(db);
    if (st == DUET_OK && cfg->backend == DUET_SQLITE) st = setup_sqlite(db);
    if (st == DUET_OK) st = open_min(db);
    if (st != DUET_OK) return open_fail(db, st);
    if (pthread_create(&db->maint, NULL, maint_main, db) != 0)
        return open_fail(db, duet__err(DUET_ERR_NO_MEMORY, "cannot start the pool's thread"));
    db->maint_started = true;
    if (db->cfg->pool.force_rollback) {
        st = duet_force_rollback(db, true);
        if (st != DUET_OK) return open_fail(db, st);
    }
    duet__err_clear();
    *out = db;
    return DUET_OK;
}

duet_status duet_open(const char *url, duet_db **out) {
    if (!out) return duet__err(DUET_ERR_MISUSE, "duet_open: out is NULL");
    *out = NULL;
    if (!url) return duet__err(DUET_ERR_MISUSE, "duet_open: url is NULL");
    duet_config *cfg;
    duet_status st = duet_config_parse(url, &cfg);
    if (st != DUET_OK) return st;
    st = duet_open_config("default", cfg, out);
    duet_config_free(cfg);
    return st;
}

void duet_close(duet_db *db) {
    if (!db) return;
    if (atomic_load(&db->fr_on)) duet__fr_switch_off(db, true);
    lock(db);
    db->closing = true;
    pthread_cond_broadcast(&db->maint_cv);
    for (duet_waiter *w = db->wait_head; w; w = w->next) pthread_cond_signal(&w->cv);
    unlock(db);
    if (db->maint_started) pthread_join(db->maint, NULL);
    pin_remove(db);
    duet__log(DUET_LOG_INFO, db->name, "pool closed");
    db_free(db);
}

const char *duet_db_name(const duet_db *db) { return db ? db->name : ""; }

duet_backend duet_db_backend(const duet_db *db) { return db ? db->cfg->backend : 0; }

const duet_config *duet__db_config(const duet_db *db) { return db ? db->cfg : NULL; }

duet_status duet_ping(duet_db *db) {
    duet_conn *c;
    duet_status st = duet__conn_enter(db, &c);
    if (st != DUET_OK) return st;
    st = db->ops->ping(c->raw);
    duet__conn_leave(db, c, st);
    return st;
}

/* ------------------------------------------------------------------ */
/* force_rollback's connection                                        */
/* ------------------------------------------------------------------ */

/*
 * Waits until no other thread holds the force_rollback connection, or it is
 * gone (switched off), for at most acquire_timeout unless forever: a thread
 * that leaves a transaction open must not hang the others.  (mu)
 */
static duet_status fr_wait_free(duet_db *db, bool forever) {
    pthread_t self = pthread_self();
    double start = -1, deadline = 0; /* the clock is read only when there is a wait */
    while (db->fr_conn && db->fr_calls > 0 && !pthread_equal(db->fr_owner, self)) {
        if (forever) {
            pthread_cond_wait(&db->call_cv, &db->mu);
            continue;
        }
        if (start < 0) {
            start = duet__now_ms();
            deadline = start + db->cfg->pool.acquire_timeout_ms;
        } else if (duet__now_ms() >= deadline) {
            db->timeouts++;
            return duet__err(DUET_ERR_TIMEOUT,
                             "pool \"%s\" timed out after %.0f ms waiting for the force_rollback "
                             "connection, which another thread is using (a long statement, or a "
                             "transaction it has not ended)",
                             db->name, duet__now_ms() - start);
        }
        struct timespec ts = duet__abs_time(deadline);
        pthread_cond_timedwait(&db->call_cv, &db->mu, &ts);
    }
    return DUET_OK;
}

/*
 * Takes the force_rollback connection for the calling thread (re-entrant):
 * DUET_OK with *out set, DUET_OK with *out NULL when force_rollback was
 * switched off meanwhile, or DUET_ERR_TIMEOUT.
 */
static duet_status fr_lock(duet_db *db, duet_conn **out, bool *outer) {
    *out = NULL;
    lock(db);
    duet_status st = fr_wait_free(db, false);
    if (st == DUET_OK && db->fr_conn) {
        db->fr_owner = pthread_self();
        *outer = db->fr_calls++ == 0;
        *out = db->fr_conn;
    }
    unlock(db);
    return st;
}

static void fr_unlock(duet_db *db) {
    lock(db);
    if (--db->fr_calls == 0) pthread_cond_broadcast(&db->call_cv);
    unlock(db);
}

bool duet__fr_install(duet_db *db, duet_conn *conn) {
    lock(db);
    if (db->fr_conn) { /* two threads switched on at once: the first one's session stands */
        unlock(db);
        return false;
    }
    conn->pool_state->is_fr = true;
    db->fr_conn = conn;
    db->fr_calls = 0;
    db->fr_held = 0;
    atomic_store(&db->fr_on, true);
    unlock(db);
    return true;
}

/*
 * A thread's program transaction in force_rollback mode keeps the
 * connection to itself until it ends, so that other threads' statements
 * and transactions do not interleave with its savepoints.
 */
void duet__fr_hold(duet_db *db, bool hold) {
    lock(db);
    if (hold && db->fr_held == 0) {
        db->fr_held = 1;
        db->fr_calls++;
    } else if (!hold && db->fr_held == 1) {
        db->fr_held = 0;
        if (--db->fr_calls == 0) pthread_cond_broadcast(&db->call_cv);
    }
    unlock(db);
}

duet_conn *duet__fr_remove(duet_db *db, bool at_close) {
    pthread_t self = pthread_self();
    lock(db);
    if (db->fr_conn && db->fr_calls > db->fr_held && pthread_equal(db->fr_owner, self)) {
        unlock(db); /* e.g. inside duet_iterate: the connection is still in use here */
        duet__err(DUET_ERR_MISUSE, "force_rollback cannot be switched off while this thread "
                                   "is using its connection (close the iteration first)");
        return NULL;
    }
    /* closing must not free a connection another thread still uses: no limit then */
    if (fr_wait_free(db, at_close) != DUET_OK) {
        unlock(db);
        return NULL;
    }
    duet_conn *c = db->fr_conn;
    db->fr_conn = NULL;
    db->fr_calls = 0;
    db->fr_held = 0;
    atomic_store(&db->fr_on, false);
    if (c) c->pool_state->is_fr = false;
    pthread_cond_broadcast(&db->call_cv);
    unlock(db);
    return c;
}

bool duet__fr_active(duet_db *db) { return db && atomic_load(&db->fr_on); }

/* ------------------------------------------------------------------ */
/* The connection a call runs on                                      */
/* ------------------------------------------------------------------ */

/* Enters a pinned connection: waits out a rollback by the reaper, reports expiry. */
static duet_status pinned_enter(duet_db *db, duet_conn *c, bool check_expired) {
    struct duet_conn_pool *ps = c->pool_state;
    lock(db);
    while (ps->reaping) pthread_cond_wait(&db->call_cv, &db->mu);
    if (check_expired && ps->expired) {
        unlock(db);
        return duet__err(DUET_ERR_EXPIRED, "transaction expired after %g s",
                         db->cfg->pool.transaction_timeout_ms / 1000.0);
    }
    ps->in_call = true;
    unlock(db);
    return DUET_OK;
}

/* Leaves a pinned connection; rolls back a transaction the reaper interrupted. */
static void pinned_leave(duet_db *db, duet_conn *c, duet_status status) {
    struct duet_conn_pool *ps = c->pool_state;
    if (is_broken_status(status)) ps->broken = true;
    lock(db);
    if (!ps->expired) { /* the common case: one lock round */
        ps->in_call = false;
        ps->last_used_ms = duet__now_ms();
        unlock(db);
        return;
    }
    /* the reaper's cancel must not hit the ROLLBACK below */
    while (ps->reaping) pthread_cond_wait(&db->call_cv, &db->mu);
    unlock(db);
    if (!ps->broken && db->ops->txn_state(c->raw) != DUET_TXN_IDLE) {
        saved_err se;
        err_save(&se);
        db->ops->exec_simple(c->raw, "ROLLBACK"); /* still watched: the reaper set a deadline */
        err_restore(&se);
    }
    lock(db);
    watch_end(db, c);
    ps->in_call = false;
    ps->last_used_ms = duet__now_ms();
    unlock(db);
}

/*
 * Common path of enter: a pin, then force_rollback, then a borrowed
 * connection.  The pin comes first: in force_rollback mode nothing pins, so
 * a pin there is a transaction begun before another thread switched it on,
 * which must end on its own connection rather than strand it.
 */
static duet_status enter(duet_db *db, bool pin, bool wrap, bool check_expired, duet_conn **out) {
    duet_conn *c = NULL;
    bool outer = false;
    *out = NULL;
    if (!db) return duet__err(DUET_ERR_MISUSE, "database handle is NULL");
    duet_pin *p = pin_find(db);
    if (p) {
        duet_status st = pinned_enter(db, p->conn, check_expired);
        if (st == DUET_OK) *out = p->conn;
        return st;
    }
    if (atomic_load(&db->fr_on)) {
        duet_status st = fr_lock(db, &c, &outer);
        if (st != DUET_OK) return st;
    }
    if (c) {
        if (wrap && outer) {
            duet_status st = duet__fr_stmt_enter(db, c);
            if (st != DUET_OK) {
                fr_unlock(db);
                return st;
            }
        }
        *out = c;
        return DUET_OK;
    }
    duet_status st = pool_acquire(db, pin ? "a transaction" : NULL, &c);
    if (st != DUET_OK) return st;
    if (pin && (st = pin_add(db, c)) != DUET_OK) {
        pool_release(db, c, DUET_OK);
        return st;
    }
    if (pin) pinned_enter(db, c, false);
    *out = c;
    return DUET_OK;
}

static void leave(duet_db *db, duet_conn *c, duet_status status, bool wrap) {
    struct duet_conn_pool *ps = c->pool_state;
    if (ps->is_fr) {
        lock(db);
        bool outer = db->fr_calls == 1;
        unlock(db);
        if (wrap && outer) duet__fr_stmt_leave(db, c, status);
        fr_unlock(db);
        return;
    }
    duet_pin *p = pin_find(db);
    if (!p || p->conn != c) { /* borrowed for one call */
        pool_release(db, c, status);
        return;
    }
    pinned_leave(db, c, status);
    if (ps->pins == 0 && ps->txn.depth == 0) {
        pin_remove(db);
        pool_release(db, c, status);
    }
}

duet_status duet__conn_enter(duet_db *db, duet_conn **out) {
    return enter(db, false, true, true, out);
}

void duet__conn_leave(duet_db *db, duet_conn *conn, duet_status status) {
    if (db && conn) leave(db, conn, status, true);
}

duet_status duet__conn_enter_txn(duet_db *db, bool pin, duet_conn **out) {
    if (!pin && db && !atomic_load(&db->fr_on) && !pin_find(db)) {
        *out = NULL;
        return DUET_ERR_MISUSE; /* txn.c words the message */
    }
    return enter(db, pin, false, false, out);
}

void duet__conn_leave_txn(duet_db *db, duet_conn *conn, duet_status status) {
    if (db && conn) leave(db, conn, status, false);
}

duet_txn_info *duet__conn_txn(duet_conn *conn) { return &conn->pool_state->txn; }

void duet__conn_txn_clock(duet_conn *conn, bool running) {
    duet_db *db = conn->db;
    lock(db);
    conn->pool_state->txn_start_ms = running ? duet__now_ms() : 0;
    if (!running) conn->pool_state->expired = false;
    unlock(db);
}

bool duet__conn_expired(duet_conn *conn, double *after_s) {
    duet_db *db = conn->db;
    lock(db);
    bool e = conn->pool_state->expired;
    unlock(db);
    if (after_s) *after_s = db->cfg->pool.transaction_timeout_ms / 1000.0;
    return e;
}

void duet__conn_watch(duet_conn *conn, bool on) {
    duet_db *db = conn->db;
    lock(db);
    if (on)
        watch_set(db, conn, duet__now_ms() + RETURN_ROLLBACK_MS);
    else
        watch_end(db, conn);
    unlock(db);
}

duet_status duet__pool_get(duet_db *db, const char *label, duet_conn **out) {
    return pool_acquire(db, label, out);
}

void duet__pool_put(duet_db *db, duet_conn *conn, duet_status status) {
    pool_release(db, conn, status);
}

/* ------------------------------------------------------------------ */
/* Pinning: duet_acquire, duet_release, duet_detach, duet_attach      */
/* ------------------------------------------------------------------ */

duet_status duet_acquire_labeled(duet_db *db, const char *label) {
    if (!db) return duet__err(DUET_ERR_MISUSE, "duet_acquire: database handle is NULL");
    duet_pin *p = pin_find(db);
    if (p) {
        p->conn->pool_state->pins++;
        return DUET_OK;
    }
    if (atomic_load(&db->fr_on)) return DUET_OK; /* every call already shares one connection */
    duet_conn *c;
    duet_status st = pool_acquire(db, label, &c);
    if (st != DUET_OK) return st;
    if ((st = pin_add(db, c)) != DUET_OK) {
        pool_release(db, c, DUET_OK);
        return st;
    }
    c->pool_state->pins = 1;
    return DUET_OK;
}

duet_status duet_release(duet_db *db) {
    if (!db) return duet__err(DUET_ERR_MISUSE, "duet_release: database handle is NULL");
    duet_pin *p = pin_find(db);
    if (!p) {
        if (atomic_load(&db->fr_on)) return DUET_OK;
        return duet__err(DUET_ERR_MISUSE, "duet_release: no connection is acquired on this thread");
    }
    duet_conn *c = p->conn;
    if (c->pool_state->pins == 0)
        return duet__err(DUET_ERR_MISUSE,
                         "duet_release: the connection is held by a transaction, not duet_acquire");
    if (--c->pool_state->pins == 0 && c->pool_state->txn.depth == 0) {
        pin_remove(db);
        pool_release(db, c, c->pool_state->broken ? DUET_ERR_CONNECTION : DUET_OK);
    }
    return DUET_OK;
}

duet_status duet_detach(duet_db *db, duet_conn **out) {
    if (!db || !out) return duet__err(DUET_ERR_MISUSE, "duet_detach: NULL argument");
    *out = NULL;
    duet_pin *p = pin_find(db);
    if (!p)
        return duet__err(DUET_ERR_MISUSE,
                         "duet_detach: no connection is pinned to this thread (duet_acquire or "
                         "duet_begin first)");
    *out = p->conn;
    pin_remove(db);
    return DUET_OK;
}

duet_status duet_attach(duet_db *db, duet_conn *conn) {
    if (!db || !conn) return duet__err(DUET_ERR_MISUSE, "duet_attach: NULL argument");
    if (conn->db != db)
        return duet__err(DUET_ERR_MISUSE,
                         "duet_attach: the connection belongs to another database");
    if (pin_find(db))
        return duet__err(DUET_ERR_MISUSE,
                         "duet_attach: this thread already has a connection pinned for \"%s\"",
                         db->name);
    return pin_add(db, conn);
}
