/* job.c - the resumable dataset runner (see job.h). */
#include "pipeline/job.h"
#include "core/strmap.h"
#include "io/csv.h"

#include <cjson/cJSON.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void fmt_dur(double s, char *buf, size_t cap) {
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, cap, "%ld:%02ld", t / 60, t % 60);
}

static void progress(const mer_job_params *p, int tty, size_t done, size_t todo, size_t failed, double t0, int final) {
    double el = now_s() - t0, rate = el > 0 ? done / el : 0;
    char eta[32], els[32];
    fmt_dur(rate > 0 ? (todo - done) / rate : 0, eta, sizeof eta);
    fmt_dur(el, els, sizeof els);
    if (tty) {
        int w = 30, fill = todo ? (int)(w * done / todo) : w;
        char bar[64];
        for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '.';
        bar[w] = 0;
        fprintf(stderr, "\r%s [%s] %zu/%zu  %.2f/s  elapsed %s  eta %s  failed %zu%s", p->label, bar, done, todo, rate, els,
                eta, failed, final ? "\n" : "");
    } else {
        fprintf(stderr, "%s: %zu/%zu done, %.2f samples/s, elapsed %s, eta %s, failed %zu\n", p->label, done, todo, rate, els,
                eta, failed);
    }
    fflush(stderr);
}

/* State shared by the runner and the commit callback. */
typedef struct job_run {
    const mer_job_params *p;
    const char *const *names;
    size_t n;
    mer_store *s;
    unsigned char *state; /* per name: 0 skip, 1 to run, 2 committed */
    int tty;
    size_t todo, done, failed_now;
    double t0, last;
} job_run;

static mer_status commit(void *cctx, size_t i, mer_status r, const char *text, const char *msg, double secs,
                         mer_err *err) {
    job_run *j = cctx;
    const mer_job_params *p = j->p;
    if (i >= j->n || j->state[i] != 1)
        return mer__errf(err, MER_E_INTERNAL, "%s: sample %zu committed twice or not to be run", p->label, i);
    if (r == MER_E_NOMEM || r == MER_E_DEVICE || r == MER_E_INTERNAL) {
        mer_err e = {0};
        e.status = r;
        if (msg) snprintf(e.msg, sizeof e.msg, "%s", msg);
        mer__err_prefix(&e, r, "%s: sample '%s'", p->label, j->names[i]);
        if (err) *err = e;
        return r;
    }
    if (r) j->failed_now++;
    mer_status st = mer__store_put(j->s, j->names[i], r == MER_OK, r == MER_OK ? (text ? text : "") : NULL,
                                   r == MER_OK ? NULL : (msg && msg[0] ? msg : mer_status_str(r)), secs, err);
    if (st) return st;
    j->state[i] = 2;
    j->done++;
    if (p->progress && (j->tty || now_s() - j->last >= 10.0)) {
        progress(p, j->tty, j->done, j->todo, j->failed_now, j->t0, 0);
        j->last = now_s();
    }
    return MER_OK;
}

mer_status mer__job_run_batched(const mer_job_params *p, const char *const *names, size_t n, mer_job_batch_fn fn,
                                void *ud, mer_job_stats *stats, mer_err *err) {
    memset(stats, 0, sizeof *stats);
    stats->n_total = n;
    job_run j = {p, names, n, NULL, NULL, p->progress && isatty(2), 0, 0, 0, now_s(), 0};
    j.last = j.t0;
    mer_status st = mer__store_open(p->store_path, p->config, &j.s, err);
    if (st) return st;
    size_t *todo = malloc((n ? n : 1) * sizeof *todo);
    j.state = calloc(n ? n : 1, 1);
    if (!todo || !j.state) {
        st = mer__errf(err, MER_E_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        int r = mer__store_status(j.s, names[i]);
        if (r < 0 || (r == 0 && p->retry_failed)) {
            j.state[i] = 1;
            todo[j.todo++] = i;
        }
    }
    stats->n_skipped = n - j.todo;
    if (p->progress && stats->n_skipped)
        fprintf(stderr, "%s: resuming: %zu of %zu already done in %s\n", p->label, stats->n_skipped, n, p->store_path);
    if (j.todo && !(st = fn(ud, todo, j.todo, commit, &j, err)))
        for (size_t k = 0; k < j.todo; k++)
            if (j.state[todo[k]] != 2) {
                st = mer__errf(err, MER_E_INTERNAL, "%s: sample '%s' was never committed", p->label, names[todo[k]]);
                break;
            }
    if (p->progress && j.todo) progress(p, j.tty, j.done, j.todo, j.failed_now, j.t0, 1);
    mer__store_counts(j.s, &stats->n_ok, &stats->n_failed);
    stats->seconds = now_s() - j.t0;
done:
    free(todo);
    free(j.state);
    mer__store_close(j.s);
    return st;
}

/* mer__job_run on the batched runner: one sample at a time. */
typedef struct one_at_a_time {
    mer_job_fn fn;
    void *ud;
    const char *const *names;
} one_at_a_time;

static mer_status run_each(void *ud, const size_t *todo, size_t n_todo, mer_job_commit_fn cm, void *cctx,
                           mer_err *err) {
    one_at_a_time *o = ud;
    mer_buf out = {0};
    mer_status st = MER_OK;
    for (size_t k = 0; k < n_todo && !st; k++) {
        size_t i = todo[k];
        out.len = 0;
        if (out.data) out.data[0] = 0;
        mer_err e = {0};
        double ts = now_s();
        mer_status r = o->fn(o->ud, i, o->names[i], &out, &e);
        st = cm(cctx, i, r, out.data ? out.data : "", e.msg, now_s() - ts, err);
    }
    mer__buf_free(&out);
    return st;
}

mer_status mer__job_run(const mer_job_params *p, const char *const *names, size_t n, mer_job_fn fn, void *ud,
                        mer_job_stats *stats, mer_err *err) {
    one_at_a_time o = {fn, ud, names};
    return mer__job_run_batched(p, names, n, run_each, &o, stats, err);
}

// --- outputs -----------------------------------------------------------------------------------------

typedef struct row {
    int ok;
    char *text, *error;
} row;

typedef struct collect_ctx {
    mer_strmap idx; /* name -> row index */
    row *rows;
    size_t n;
    int fail;
} collect_ctx;

static int collect_cb(void *ud, const char *name, int ok, const char *text, const char *error, double secs) {
    collect_ctx *c = ud;
    int64_t *i = mer__strmap_get(&c->idx, name, strlen(name));
    if (!i) return 0; /* a row for a name outside this list: not written */
    row *r = &c->rows[*i];
    r->ok = ok;
    r->text = text ? strdup(text) : NULL;
    r->error = error ? strdup(error) : NULL;
    if ((text && !r->text) || (error && !r->error)) c->fail = 1;
    return c->fail;
}

static char *sibling(const char *npz_path, const char *ext) {
    size_t n = strlen(npz_path);
    if (n > 4 && !strcmp(npz_path + n - 4, ".npz")) n -= 4;
    char *p = malloc(n + strlen(ext) + 1);
    if (!p) return NULL;
    memcpy(p, npz_path, n);
    strcpy(p + n, ext);
    return p;
}

mer_status mer__job_write_outputs(const char *store_path, const char *config, const char *npz_path, int openset,
                                  const char *const *names, size_t n, mer_err *err) {
    mer_store *s = NULL;
    mer_status st = mer__store_open(store_path, config, &s, err);
    if (st) return st;
    collect_ctx c = {0};
    mer_labeled *ok_rows = NULL;
    mer_buf csv = {0}, jl = {0};
    char *csv_path = sibling(npz_path, ".csv"), *jl_path = sibling(npz_path, ".jsonl");
    c.rows = calloc(n ? n : 1, sizeof *c.rows);
    ok_rows = calloc(n ? n : 1, sizeof *ok_rows);
    if (!c.rows || !ok_rows || !csv_path || !jl_path) goto nomem;
    c.n = n;
    for (size_t i = 0; i < n; i++)
        if (mer__strmap_put(&c.idx, names[i], strlen(names[i]), (int64_t)i, NULL, NULL)) goto nomem;
    if ((st = mer__store_each(s, collect_cb, &c, err))) goto done;
    if (c.fail) goto nomem;
    size_t n_ok = 0;
    if (mer__buf_append(&csv, "name,ok,text,error\n", 19)) goto nomem;
    for (size_t i = 0; i < n; i++) {
        row *r = &c.rows[i];
        if (!r->text && !r->error) continue; /* not run */
        if (r->ok) {
            ok_rows[n_ok].name = names[i];
            ok_rows[n_ok++].labels = r->text;
        }
        if (mer__csv_put_field(&csv, names[i]) || mer__buf_printf(&csv, ",%d,", r->ok) ||
            mer__csv_put_field(&csv, r->text ? r->text : "") || mer__buf_putc(&csv, ',') ||
            mer__csv_put_field(&csv, r->error ? r->error : "") || mer__buf_putc(&csv, '\n'))
            goto nomem;
        cJSON *o = cJSON_CreateObject();
        if (!o) goto nomem;
        cJSON_AddStringToObject(o, "name", names[i]);
        cJSON_AddBoolToObject(o, "ok", r->ok);
        if (r->text) cJSON_AddStringToObject(o, "text", r->text);
        if (r->error) cJSON_AddStringToObject(o, "error", r->error);
        char *js = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!js) goto nomem;
        int bad = mer__buf_append(&jl, js, strlen(js)) || mer__buf_putc(&jl, '\n');
        cJSON_free(js);
        if (bad) goto nomem;
    }
    if ((st = openset ? mer_openset_npz_write(npz_path, ok_rows, n_ok, err) : mer_result_npz_write(npz_path, ok_rows, n_ok, err)) ||
        (st = mer__write_file_atomic(csv_path, csv.data, csv.len, err)) ||
        (st = mer__write_file_atomic(jl_path, jl.data ? jl.data : "", jl.len, err)))
        goto done;
    goto done;
nomem:
    st = mer__errf(err, MER_E_NOMEM, "%s: out of memory while writing outputs", npz_path);
done:
    if (c.rows)
        for (size_t i = 0; i < n; i++) {
            free(c.rows[i].text);
            free(c.rows[i].error);
        }
    free(c.rows);
    free(ok_rows);
    mer__strmap_free(&c.idx);
    mer__buf_free(&csv);
    mer__buf_free(&jl);
    free(csv_path);
    free(jl_path);
    mer__store_close(s);
    return st;
}
