/* store.h - the result store of a dataset run: one SQLite database per output, one row per sample,
 * each committed as soon as it is produced, so that a run killed at any moment (kill -9 included) and
 * started again with the same command continues where it stopped, losing and duplicating nothing.
 * The run's configuration is kept in the database; reopening it with a different configuration is
 * an error rather than a silent mix of two runs. */
#ifndef MER_PIPELINE_STORE_H
#define MER_PIPELINE_STORE_H

#include "core/core.h"

typedef struct mer_store mer_store;

/* Opens (creating if needed) the store at `path` for a run described by `config` (any text, e.g.
 * JSON of the options that change results). MER_E_ARG if the store holds another configuration.
 * Caller frees with mer__store_close. */
mer_status mer__store_open(const char *path, const char *config, mer_store **out, mer_err *err);
void mer__store_close(mer_store *s);

/* 1 if `name` already has a row (success or recorded failure), else 0. */
int mer__store_has(mer_store *s, const char *name);
/* -1 when `name` has no row, 0 when its row is a recorded failure, 1 when it succeeded. */
int mer__store_status(mer_store *s, const char *name);

/* Records one sample durably: ok=1 with its text, or ok=0 with its error message. Replaces an
 * earlier row of the same name. */
mer_status mer__store_put(mer_store *s, const char *name, int ok, const char *text, const char *error,
                          double seconds, mer_err *err);

/* Calls cb for every row in the order the rows were first written. Stops early (and returns the
 * status) if cb returns non-zero. */
typedef int (*mer_store_cb)(void *ud, const char *name, int ok, const char *text, const char *error, double seconds);
mer_status mer__store_each(mer_store *s, mer_store_cb cb, void *ud, mer_err *err);

/* Counts of rows: successes and failures. */
void mer__store_counts(mer_store *s, size_t *n_ok, size_t *n_failed);

#endif
