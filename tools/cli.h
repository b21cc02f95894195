/* cli.h - what the subcommands of the `mer` tool share: the command table, argument helpers and the
 * one-line error report. Subcommands call only include/mer.h (and these helpers). */
#ifndef MER_CLI_H
#define MER_CLI_H
#include "mer.h"

#include <stdio.h>

/* Exit status for any failure caused by input or environment (bad file, missing option). */
#define MER_EXIT_ERR 2

typedef struct mer_cmd {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand name */
} mer_cmd;

/* Prints "mer <cmd>: <message>" on stderr and returns MER_EXIT_ERR. */
int cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Same, with the message of err. */
int cli_fail_err(const char *cmd, const mer_err *err);

/* Option parsing: if argv[*i] is `name`, takes the next argument into *val (failing when absent),
 * advances *i and returns 1; returns 0 if argv[*i] is another option; -1 on a missing value. */
int cli_opt(int argc, char **argv, int *i, const char *name, const char **val);
/* Parses a whole int/double option value; returns 0 on success. */
int cli_parse_long(const char *s, long *out);
int cli_parse_double(const char *s, double *out);
/* True if argv has -h or --help. */
int cli_wants_help(int argc, char **argv);

/* Finds data/<sub> shipped with mer ($MER_DATA, beside the binary, ./data). 0 if found. */
int cli_data_path(const char *sub, char *out, size_t cap);

int mer_cmd_eval(int argc, char **argv);
int mer_cmd_extract(int argc, char **argv);
int mer_cmd_infer(int argc, char **argv);
int mer_cmd_pack(int argc, char **argv);
int mer_cmd_generate(int argc, char **argv);
int mer_cmd_inspect(int argc, char **argv);
int mer_cmd_quantize(int argc, char **argv);
int mer_cmd_convert(int argc, char **argv);
int mer_cmd_tokenize(int argc, char **argv);
/* The face-api models folder: `opt` if given, else $MER_MODELS/face-api, <exe>/../models/face-api,
 * ./models/face-api (the first holding the detector's manifest). 0 if found (defined in cmd_run.c). */
int cli_face_models(const char *opt, char *out, size_t cap);
int mer_cmd_run(int argc, char **argv);
int mer_cmd_faces(int argc, char **argv);
int mer_cmd_features(int argc, char **argv);
#endif
