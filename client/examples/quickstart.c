/*
 * quickstart.c — libduet in one page; the README quickstart is this file.
 *
 *   cc quickstart.c $(pkg-config --cflags --libs duet) -o quickstart
 *   ./quickstart                                  # SQLite files in the current directory
 *   ./quickstart postgresql://localhost/app postgresql://localhost/analytics
 *
 * Two named connections, a table, execute_many, fetch_all / fetch_one /
 * fetch_val, iterate, a nested transaction whose inner part rolls back, and
 * bad input with its error.  Error handling is spelled out once (check).
 */
#include <stdio.h>
#include <stdlib.h>

#include "duet.h"

/* Prints the failure and exits: fine for a demo, not for a library. */
static void check(duet_status st, const char *what) {
    if (st == DUET_OK) return;
    fprintf(stderr, "%s: %s error: %s\n", what, duet_status_name(st), duet_errmsg());
    exit(1);
}

static void add_user(duet_params *p, int64_t id, const char *name, double score) {
    duet_bind_int64(p, "id", id);
    duet_bind_text(p, "name", name);
    duet_bind_double(p, "score", score);
}

static void show_error(const char *what, duet_status st) {
    printf("  %-34s -> %s: %s", what, duet_status_name(st), duet_errmsg());
    if (*duet_errsqlstate()) printf(" [SQLSTATE %s]", duet_errsqlstate());
    printf("\n");
}

int main(int argc, char **argv) {
    /* 1. Named connections, opened together (all or nothing). */
    const char *names[] = {"default", "analytics"};
    const char *urls[] = {argc > 1 ? argv[1] : "sqlite:///app.db",
                          argc > 2 ? argv[2] : "sqlite:///analytics.db"};
    duet_registry *reg = duet_registry_new();
    check(duet_registry_init(reg, names, urls, 2), "init");
    duet_db *db, *analytics;
    check(duet_get(reg, "default", &db), "get default");
    check(duet_get(reg, "analytics", &analytics), "get analytics");
    printf("connected: default (%s), analytics\n",
           duet_db_backend(db) == DUET_POSTGRESQL ? "postgresql" : "sqlite");

    /* 2. A table, and three rows in one all-or-nothing batch. */
    check(duet_execute(db, "DROP TABLE IF EXISTS users", NULL, NULL, NULL), "drop");
    check(duet_execute(db, "CREATE TABLE users (id BIGINT PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
                           "score DOUBLE PRECISION)", NULL, NULL, NULL), "create");
    duet_params *rows[3];
    for (int i = 0; i < 3; i++) rows[i] = duet_params_new();
    add_user(rows[0], 1, "ada", 9.5);
    add_user(rows[1], 2, "grace", 8.0);
    add_user(rows[2], 3, "linus", 7.25);
    int64_t affected;
    check(duet_execute_many(db, "INSERT INTO users (id, name, score) VALUES (:id, :name, :score)",
                            rows, 3, &affected), "execute_many");
    printf("execute_many: %lld rows inserted\n", (long long)affected);

    /* 3. fetch_all, fetch_one (exactly one row), fetch_val (one value). */
    duet_result *r;
    check(duet_fetch_all(db, "SELECT id, name, score FROM users ORDER BY id", NULL, &r), "fetch_all");
    printf("fetch_all:\n");
    for (size_t i = 0; i < duet_result_nrows(r); i++) {
        int64_t id;
        double score;
        duet_result_int64(r, i, 0, &id);
        duet_result_double(r, i, 2, &score);
        printf("  %lld  %-6s %5.2f\n", (long long)id, duet_result_text(r, i, 1), score);
    }
    duet_result_free(r);

    duet_params *p = duet_params_new();
    duet_bind_text(p, "name", "grace");
    check(duet_fetch_one(db, "SELECT id, score FROM users WHERE name = :name", p, &r), "fetch_one");
    printf("fetch_one: grace has id %s\n", duet_result_text(r, 0, 0));
    duet_result_free(r);

    check(duet_fetch_val(db, "SELECT count(*) FROM users", NULL, 0, &r), "fetch_val");
    printf("fetch_val: %s users\n", duet_result_text(r, 0, 0));
    duet_result_free(r);

    /* 4. iterate: rows one at a time, in constant memory. */
    duet_params_clear(p);
    duet_bind_double(p, NULL, 7.5); /* positional: ? */
    duet_rows *it;
    const duet_result *row;
    check(duet_iterate(db, "SELECT name FROM users WHERE score > ? ORDER BY name", p, &it), "iterate");
    printf("iterate:");
    duet_status st;
    while ((st = duet_rows_next(it, &row)) == DUET_ROW) printf(" %s", duet_result_text(row, 0, 0));
    duet_rows_close(it);
    check(st == DUET_DONE ? DUET_OK : st, "rows_next");
    printf("\n");

    /* 5. A nested transaction: the inner part (a savepoint) rolls back. */
    check(duet_begin(db), "begin");
    check(duet_execute(db, "INSERT INTO users (id, name, score) VALUES (4, 'dave', 6)", NULL, NULL, NULL), "insert");
    check(duet_begin(db), "begin nested");
    check(duet_execute(db, "INSERT INTO users (id, name, score) VALUES (5, 'eve', 5)", NULL, NULL, NULL), "insert");
    check(duet_rollback(db), "rollback nested");
    check(duet_commit(db), "commit");
    check(duet_fetch_val(db, "SELECT count(*) FROM users", NULL, 0, &r), "fetch_val");
    printf("nested transaction: dave kept, eve rolled back -> %s users\n", duet_result_text(r, 0, 0));
    duet_result_free(r);

    /* 6. The second named connection is another database. */
    check(duet_execute(analytics, "DROP TABLE IF EXISTS events", NULL, NULL, NULL), "drop");
    check(duet_execute(analytics, "CREATE TABLE events (id BIGINT PRIMARY KEY, kind TEXT)", NULL, NULL, NULL), "create");
    int64_t id;
    check(duet_execute(analytics, "INSERT INTO events VALUES (1, 'signup') RETURNING id", NULL, NULL, &id), "insert");
    printf("analytics: event %lld recorded\n", (long long)id);

    /* 7. Bad input gets a clear error, never a crash. */
    printf("bad input:\n");
    duet_params_clear(p);
    show_error("unbound :name", duet_fetch_one(db, "SELECT * FROM users WHERE name = :name", p, &r));
    duet_bind_text(p, "name", "nobody");
    show_error("no such user", duet_fetch_one(db, "SELECT * FROM users WHERE name = :name", p, &r));
    show_error("duplicate user", duet_execute_many(db, "INSERT INTO users (id, name, score) "
                                                   "VALUES (:id, :name, :score)", rows, 1, NULL));
    duet_db *other;
    show_error("unknown connection", duet_get(reg, "reporting", &other));
    show_error("unsupported URL", duet_register(reg, "legacy", "mysql://u:secret@localhost/old"));

    for (int i = 0; i < 3; i++) duet_params_free(rows[i]);
    duet_params_free(p);
    duet_registry_close(reg); /* rolls back anything still open, closes every pool */
    return 0;
}
