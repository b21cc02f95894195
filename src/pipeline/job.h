/* job.h - the resumable dataset runner shared by `mer infer` and `mer extract`: runs a per-sample
 * function over a list of names, commits each result (or the sample's error) to the SQLite store as
 * soon as it is produced, skips names the store already has, shows progress, and writes the outputs
 * (result .npz as the reference's Python reads it, plus CSV and JSON lines) from the store. */
#ifndef MER_PIPELINE_JOB_H
#define MER_PIPELINE_JOB_H

#include "pipeline/store.h"

/* Produces the text for one sample into out (cleared by the caller). A returned error is recorded
 * for that sample and the run goes on, except MER_E_NOMEM, MER_E_DEVICE and MER_E_INTERNAL, which
 * stop the run (after the rows already committed). */
typedef mer_status (*mer_job_fn)(void *ud, size_t index, const char *name, mer_buf *out, mer_err *err);

typedef struct mer_job_stats {
    size_t n_total;   /* names in the list */
    size_t n_skipped; /* already in the store when the run started */
    size_t n_ok;      /* successes in the store at the end */
    size_t n_failed;  /* recorded failures in the store at the end */
    double seconds;   /* wall time of this run */
} mer_job_stats;

typedef struct mer_job_params {
    const char *store_path; /* the SQLite file (e.g. OUT.npz.db) */
    const char *config;     /* options that change results; a store made with others is refused */
    const char *label;      /* shown in progress lines ("infer", "extract") */
    int progress;           /* 0: silent; 1: on stderr (a bar on a terminal, lines every 10 s otherwise) */
    int retry_failed;       /* re-run names whose earlier attempt failed */
} mer_job_params;

/* Runs fn over names[0..n) as described above. Returns MER_OK when every name has a row (success or
 * recorded failure); the first fatal error otherwise. */
mer_status mer__job_run(const mer_job_params *p, const char *const *names, size_t n, mer_job_fn fn, void *ud,
                        mer_job_stats *stats, mer_err *err);

/* The batched form. The runner calls fn once with the indices still to run (todo[0..n_todo), in list
 * order); fn runs them in any order and any grouping and calls commit for each as soon as it is done:
 * st MER_OK with text (NULL: ""), or the sample's error (st, msg). commit stores the row at once (so a
 * killed run resumes after the last committed sample) and returns non-zero to stop: for a store failure,
 * or when st is MER_E_NOMEM, MER_E_DEVICE or MER_E_INTERNAL (fatal, as in mer__job_run); fn then returns
 * that status with err as commit filled it. seconds: the sample's wall time, as fn measures it. */
typedef mer_status (*mer_job_commit_fn)(void *cctx, size_t index, mer_status st, const char *text, const char *msg,
                                        double seconds, mer_err *err);
typedef mer_status (*mer_job_batch_fn)(void *ud, const size_t *todo, size_t n_todo, mer_job_commit_fn commit,
                                       void *cctx, mer_err *err);

/* Runs fn over names[0..n) as mer__job_run does (skipping stored names, committing each result as it
 * comes, progress). Returns MER_OK when every name has a row, the first fatal error otherwise (also an
 * index fn never committed: MER_E_INTERNAL). */
mer_status mer__job_run_batched(const mer_job_params *p, const char *const *names, size_t n, mer_job_batch_fn fn,
                                void *ud, mer_job_stats *stats, mer_err *err);

/* Writes the store's rows for names[0..n) (in that order; names without a successful row are left
 * out of the npz) to `npz_path` - a result npz (name2reason pickled dict, np.load(...,
 * allow_pickle=True) reads it), or with `openset` an *-openset.npz submission (filenames, fileitems) -
 * and beside it <base>.csv (name,ok,text,error) and <base>.jsonl. */
mer_status mer__job_write_outputs(const char *store_path, const char *config, const char *npz_path, int openset,
                                  const char *const *names, size_t n, mer_err *err);

#endif
