/* store.c - the SQLite result store of dataset runs (see store.h). WAL journal, one transaction per
 * sample: a crash loses at most the sample in flight, never a committed one. */
#include "pipeline/store.h"

#include <sqlite3.h>
#include <string.h>

struct mer_store {
    sqlite3 *db;
    sqlite3_stmt *has, *put;
    char *path;
};

static mer_status db_err(mer_err *err, const char *path, sqlite3 *db, const char *what) {
    return mer__errf(err, MER_E_IO, "%s: %s: %s", path, what, db ? sqlite3_errmsg(db) : "cannot open");
}

void mer__store_close(mer_store *s) {
    if (!s) return;
    sqlite3_finalize(s->has);
    sqlite3_finalize(s->put);
    sqlite3_close(s->db);
    free(s->path);
    free(s);
}

mer_status mer__store_open(const char *path, const char *config, mer_store **out, mer_err *err) {
    *out = NULL;
    mer_store *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        free(s);
        return mer__errf(err, MER_E_NOMEM, "%s: out of memory", path);
    }
    mer_status st = MER_OK;
    sqlite3_stmt *q = NULL;
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        st = db_err(err, path, s->db, "open");
        goto fail;
    }
    sqlite3_busy_timeout(s->db, 5000);
    const char *schema =
        "PRAGMA journal_mode=WAL;"
        "PRAGMA synchronous=NORMAL;"
        "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE IF NOT EXISTS results(seq INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE NOT NULL,"
        " ok INTEGER NOT NULL, text TEXT, error TEXT, seconds REAL, finished_at TEXT DEFAULT CURRENT_TIMESTAMP);";
    char *msg = NULL;
    if (sqlite3_exec(s->db, schema, NULL, NULL, &msg) != SQLITE_OK) {
        st = mer__errf(err, MER_E_IO, "%s: not a mer result store (%s)", path, msg ? msg : "?");
        sqlite3_free(msg);
        goto fail;
    }
    if (sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key='config'", -1, &q, NULL) != SQLITE_OK) {
        st = db_err(err, path, s->db, "read config");
        goto fail;
    }
    if (sqlite3_step(q) == SQLITE_ROW) {
        const char *old = (const char *)sqlite3_column_text(q, 0);
        if (!old || strcmp(old, config)) {
            st = mer__errf(err, MER_E_ARG, "%s: this run was started with other options (%s); remove the file or "
                           "use another output to start a new run", path, old ? old : "?");
            goto fail;
        }
    } else {
        sqlite3_stmt *ins = NULL;
        if (sqlite3_prepare_v2(s->db, "INSERT INTO meta(key, value) VALUES('config', ?)", -1, &ins, NULL) != SQLITE_OK ||
            sqlite3_bind_text(ins, 1, config, -1, SQLITE_TRANSIENT) != SQLITE_OK || sqlite3_step(ins) != SQLITE_DONE) {
            sqlite3_finalize(ins);
            st = db_err(err, path, s->db, "write config");
            goto fail;
        }
        sqlite3_finalize(ins);
    }
    if (sqlite3_prepare_v2(s->db, "SELECT ok FROM results WHERE name=?", -1, &s->has, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db,
                           "INSERT INTO results(name, ok, text, error, seconds) VALUES(?,?,?,?,?) "
                           "ON CONFLICT(name) DO UPDATE SET ok=excluded.ok, text=excluded.text, error=excluded.error,"
                           " seconds=excluded.seconds, finished_at=CURRENT_TIMESTAMP",
                           -1, &s->put, NULL) != SQLITE_OK) {
        st = db_err(err, path, s->db, "prepare");
        goto fail;
    }
    sqlite3_finalize(q);
    *out = s;
    return MER_OK;
fail:
    sqlite3_finalize(q);
    mer__store_close(s);
    return st;
}

int mer__store_status(mer_store *s, const char *name) {
    sqlite3_reset(s->has);
    sqlite3_bind_text(s->has, 1, name, -1, SQLITE_TRANSIENT);
    int r = sqlite3_step(s->has) == SQLITE_ROW ? sqlite3_column_int(s->has, 0) : -1;
    sqlite3_reset(s->has);
    return r;
}

int mer__store_has(mer_store *s, const char *name) { return mer__store_status(s, name) >= 0; }

mer_status mer__store_put(mer_store *s, const char *name, int ok, const char *text, const char *error,
                          double seconds, mer_err *err) {
    sqlite3_reset(s->put);
    sqlite3_bind_text(s->put, 1, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s->put, 2, ok ? 1 : 0);
    if (text) sqlite3_bind_text(s->put, 3, text, -1, SQLITE_TRANSIENT); else sqlite3_bind_null(s->put, 3);
    if (error) sqlite3_bind_text(s->put, 4, error, -1, SQLITE_TRANSIENT); else sqlite3_bind_null(s->put, 4);
    sqlite3_bind_double(s->put, 5, seconds);
    int rc = sqlite3_step(s->put);
    sqlite3_reset(s->put);
    if (rc != SQLITE_DONE) return db_err(err, s->path, s->db, "write result");
    return MER_OK;
}

mer_status mer__store_each(mer_store *s, mer_store_cb cb, void *ud, mer_err *err) {
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT name, ok, text, error, seconds FROM results ORDER BY seq", -1, &q, NULL) != SQLITE_OK)
        return db_err(err, s->path, s->db, "read results");
    int rc;
    mer_status st = MER_OK;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (cb(ud, (const char *)sqlite3_column_text(q, 0), sqlite3_column_int(q, 1), (const char *)sqlite3_column_text(q, 2),
               (const char *)sqlite3_column_text(q, 3), sqlite3_column_double(q, 4))) {
            st = mer__errf(err, MER_E_INTERNAL, "%s: stopped while reading results", s->path);
            break;
        }
    }
    if (!st && rc != SQLITE_DONE) st = db_err(err, s->path, s->db, "read results");
    sqlite3_finalize(q);
    return st;
}

void mer__store_counts(mer_store *s, size_t *n_ok, size_t *n_failed) {
    sqlite3_stmt *q = NULL;
    *n_ok = *n_failed = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT ok, COUNT(*) FROM results GROUP BY ok", -1, &q, NULL) != SQLITE_OK) return;
    while (sqlite3_step(q) == SQLITE_ROW) {
        if (sqlite3_column_int(q, 0)) *n_ok = (size_t)sqlite3_column_int64(q, 1);
        else *n_failed = (size_t)sqlite3_column_int64(q, 1);
    }
    sqlite3_finalize(q);
}
