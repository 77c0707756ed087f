/*
 * cri-net's native CNI launcher: hands one CNI call to `cri-net serve` (cri_net/cni_wire.py
 * describes the protocol) without starting Python, and runs the Python launcher otherwise.
 *
 * A runtime execs its CNI plugin for every pod start and stop; a Python start costs more
 * than the plugins' own work on a small node. `cri-net cni-plugin install` compiles this
 * file when a C compiler is present, with -DFALLBACK="<the Python launcher>".
 *
 * Same rules as cni_wire.try_handoff: only ADD/DEL/CHECK/STATUS/GC are forwarded; the socket
 * is the config's "daemonSocket" (default /run/cri-net/cni.sock; "" or anything unusual: no
 * handoff); not delivered -> Python does the work; delivered but unanswered -> an ADD fails
 * with code 11 (never repeated behind the runtime's back), anything else runs in Python.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef FALLBACK
#error "compile with -DFALLBACK=\"/path/to/python/launcher\""
#endif

#define DEFAULT_SOCKET "/run/cri-net/cni.sock"
#define MAX_MESSAGE (16 * 1024 * 1024)

extern char **environ;

/* cri-net refuses any network whose plugin file carries this mark (operator/selfguard.py). */
__attribute__((used)) static const char launcher_mark[] = "cri_net.cni_launcher";

struct buf { char *data; size_t len, cap; };

static int append(struct buf *b, const void *data, size_t len) {
    if (b->len + len > MAX_MESSAGE) return -1;
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 65536;
        while (cap < b->len + len) cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) return -1;
        b->data = p; b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

static int read_all(int fd, struct buf *b) {
    char chunk[65536];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n == 0) return 0;
        if (n < 0) { if (errno == EINTR) continue; return -1; }
        if (append(b, chunk, (size_t)n) < 0) return -1;
    }
}

static int write_all(int fd, const char *data, size_t len) {
    while (len) {
        ssize_t n = write(fd, data, len);
        if (n < 0) { if (errno == EINTR) continue; return -1; }
        data += n; len -= (size_t)n;
    }
    return 0;
}

static const char *find(const char *hay, size_t len, const char *needle, size_t from) {
    size_t n = strlen(needle);
    for (size_t i = from; i + n <= len; i++)
        if (memcmp(hay + i, needle, n) == 0) return hay + i;
    return NULL;
}

/* The plain string value of a top-level key, as cni_wire.socket_from_conf reads it:
 * 1 and `out` set; 0 when the key is absent; -1 when it is unusual (off, escaped, twice). */
static int string_value(const struct buf *in, const char *quoted_key, char *out, size_t outlen) {
    const char *k = find(in->data, in->len, quoted_key, 0);
    if (!k) return 0;
    size_t klen = strlen(quoted_key), at = (size_t)(k - in->data);
    if (find(in->data, in->len, quoted_key, at + 1)) return -1;
    const char *p = k + klen, *end = in->data + in->len;
    while (p < end && strchr(" \t\r\n", *p)) p++;
    if (p >= end || *p != ':') return -1;
    p++;
    while (p < end && strchr(" \t\r\n", *p)) p++;
    if (p >= end || *p != '"') return -1;
    const char *v = ++p;
    while (p < end && *p != '"') { if (*p == '\\') return -1; p++; }
    size_t n = (size_t)(p - v);
    if (p >= end || n == 0 || n >= outlen) return -1;
    memcpy(out, v, n);
    out[n] = 0;
    return 1;
}

static void fallback(const struct buf *in, char **argv) {
    /* stdin was consumed: hand the Python launcher the same bytes on a memory file */
    int fd = memfd_create("cri-net-stdin", 0);
    if (fd >= 0 && write_all(fd, in->data, in->len) == 0 && lseek(fd, 0, SEEK_SET) == 0 && dup2(fd, 0) == 0) {
        if (fd != 0) close(fd);
        argv[0] = FALLBACK;
        execv(FALLBACK, argv);
    }
    fprintf(stdout, "{\"cniVersion\":\"1.0.0\",\"code\":999,\"msg\":\"cri-net launcher: cannot run %s: %s\"}\n",
            FALLBACK, strerror(errno));
    exit(1);
}

int main(int argc, char **argv) {
    (void)argc;
    struct buf in = {0}, req = {0}, reply = {0};
    if (read_all(0, &in) < 0) fallback(&in, argv);
    const char *cmd = getenv("CNI_COMMAND");
    const char *caller = getenv("CRI_NET_CALLER"); /* run by cri-net itself: Python refuses */
    if (!cmd || (caller && *caller) || !(strcmp(cmd, "ADD") == 0 || strcmp(cmd, "DEL") == 0 || strcmp(cmd, "CHECK") == 0 ||
                  strcmp(cmd, "STATUS") == 0 || strcmp(cmd, "GC") == 0))
        fallback(&in, argv);

    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int found = string_value(&in, "\"daemonSocket\"", addr.sun_path, sizeof addr.sun_path);
    if (found < 0) fallback(&in, argv);
    if (found == 0) strcpy(addr.sun_path, DEFAULT_SOCKET);

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) fallback(&in, argv);

    if (append(&req, "CRINET1\n", 8) < 0) fallback(&in, argv);
    for (char **e = environ; *e; e++)
        if (strncmp(*e, "CNI_", 4) == 0 && append(&req, *e, strlen(*e) + 1) < 0) fallback(&in, argv);
    if (append(&req, "", 1) < 0 || append(&req, in.data, in.len) < 0) fallback(&in, argv);

    int broken = write_all(fd, req.data, req.len) < 0 || shutdown(fd, SHUT_WR) < 0 || read_all(fd, &reply) < 0;
    char *nl = (broken || reply.len == 0) ? NULL : memchr(reply.data, '\n', reply.len);
    if (!nl || nl == reply.data) {
        if (strcmp(cmd, "ADD") != 0) fallback(&in, argv); /* idempotent: safe to run again here */
        char version[64];
        if (string_value(&in, "\"cniVersion\"", version, sizeof version) != 1) strcpy(version, "1.0.0");
        printf("{\"cniVersion\":\"%s\",\"code\":11,\"msg\":\"%s: no answer from cri-net serve\"}\n",
               version, addr.sun_path);
        return 1;
    }
    *nl = 0;
    int rc = atoi(reply.data);
    size_t head = (size_t)(nl - reply.data) + 1;
    if (write_all(1, reply.data + head, reply.len - head) < 0) return 1;
    return rc;
}
