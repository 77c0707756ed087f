/*
 * cri-net's native CNI launcher: hands one CNI call to `cri-net serve` (cri_net/cni_wire.py
 * describes the protocol) without starting Python, and runs the Python launcher otherwise.
 *
 * A runtime execs its CNI plugin for every pod start and stop; a Python start costs more
 * than the plugins' own work on a small node. `cri-net cni-plugin install` compiles this
 * file when a C compiler is present, with -DFALLBACK="<the Python launcher>".
 *
 * VERSION is answered here, as the Python plugin answers it (handler.handle), byte for byte: a
 * runtime asks it of every plugin it loads, and a Python start is 10-20 ms against ~1 ms here.
 * Only a config the scanner below reads with certainty is answered; anything unusual runs
 * the Python launcher, which gives the same answer or the same error.
 *
 * Same rules as cni_wire.try_handoff: only ADD/DEL/CHECK/STATUS/GC are forwarded; the socket
 * is the config's own top-level "daemonSocket" (default /run/cri-net/cni.sock; "": no
 * handoff; anything unusual: the Python launcher decides with a real JSON parser); no server
 * (no socket file, or nobody listening) -> Python does the work; a busy server (full
 * backlog) is waited for, up to CONNECT_WAIT; delivered but unanswered, or still busy -> an
 * ADD fails with code 11 (never repeated behind the runtime's back), anything else runs in
 * Python. Every wait on the socket is bounded.
 *
 * A node with no Python (the image's static build, deploy/): FALLBACK does not exist. With no
 * server the shim then waits up to SERVER_WAIT for one (the DaemonSet's pod may be restarting
 * during an upgrade), and what Python would have done answers code 11 "try again later".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef FALLBACK
#error "compile with -DFALLBACK=\"/path/to/python/launcher\""
#endif

#define DEFAULT_SOCKET "/run/cri-net/cni.sock"
#define MAX_MESSAGE (16 * 1024 * 1024)
#define MAX_INPUT (MAX_MESSAGE - 1024 * 1024) /* cni_wire.MAX_INPUT: Python says why it is refused */
#define CONNECT_WAIT 10 /* seconds; cni_wire.CONNECT_WAIT */
#define CALL_TIMEOUT 110 /* seconds; cni_wire.CALL_TIMEOUT (under kubelet's 2 min CRI deadline) */
#ifndef SERVER_WAIT
#define SERVER_WAIT 8 /* seconds a node without FALLBACK waits for a server to appear */
#endif

/* handler.SUPPORTED_VERSIONS, oldest first; `cri-net cni-plugin install` passes the list of
 * the code it installs (the tests hold the two answers equal) */
#ifndef CNI_VERSIONS
#define CNI_VERSIONS "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"
#endif

extern char **environ;
static const char *socket_path = DEFAULT_SOCKET; /* for messages */

/* cri-net refuses any network whose plugin file carries this mark (operator/selfguard.py). */
__attribute__((used)) static const char launcher_mark[] = "cri_net.plugin.launcher";

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

/* ---- the plugin config's own top-level string keys -----------------------------------------
 * containerd puts the pod's annotations (chosen by the pod's author) into the same stdin, so a
 * key is only honoured at the top level of the config. This is a validating JSON scan: a
 * definite answer is given only for a well-formed document that Python's json would read the
 * same way; anything else (escapes in a key, exponents, deep nesting, a BOM, bad UTF-8...) is
 * SCAN_UNUSUAL and the Python launcher decides with the real parser (cni_wire.socket_from_conf,
 * which the unit tests hold this scanner to). */
enum { SCAN_UNUSUAL = -1, SCAN_ABSENT = 0, SCAN_FOUND = 1 };
#define SCAN_MAX_DEPTH 64
#define SCAN_MAX_NUMBER 300 /* int and float conversions of shorter numbers never fail */

struct scan { const unsigned char *p, *end; };

static void scan_ws(struct scan *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) s->p++;
}

static int scan_hex(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* length of one UTF-8 sequence as Python decodes it (surrogates pass, as json.loads allows); 0: invalid */
static int scan_utf8(const unsigned char *p, const unsigned char *end) {
    unsigned c = p[0], lo = 0x80, hi = 0xBF;
    int n;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c == 0xE0) { n = 3; lo = 0xA0; }
    else if (c >= 0xE1 && c <= 0xEF) n = 3;
    else if (c == 0xF0) { n = 4; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) n = 4;
    else if (c == 0xF4) { n = 4; hi = 0x8F; }
    else return 0;
    if (end - p < n || p[1] < lo || p[1] > hi) return 0;
    for (int i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF) return 0;
    return n;
}

/* a string at s->p (the opening quote): its raw bytes, and whether it holds escapes */
static int scan_string(struct scan *s, const unsigned char **raw, size_t *len, int *escaped) {
    const unsigned char *p = s->p + 1;
    *raw = p;
    *escaped = 0;
    while (p < s->end) {
        unsigned char c = *p;
        if (c == '"') {
            *len = (size_t)(p - *raw);
            s->p = p + 1;
            return 0;
        }
        if (c < 0x20) return -1;
        if (c == '\\') {
            *escaped = 1;
            if (++p >= s->end) return -1;
            c = *p;
            if (c == 'u') {
                if (s->end - p < 5 || !scan_hex(p[1]) || !scan_hex(p[2]) || !scan_hex(p[3]) || !scan_hex(p[4]))
                    return -1;
                p += 5;
            } else if (c && strchr("\"\\/bfnrt", c)) {
                p++;
            } else {
                return -1;
            }
            continue;
        }
        int n = scan_utf8(p, s->end);
        if (!n) return -1;
        p += n;
    }
    return -1;
}

static int scan_digits(struct scan *s) {
    const unsigned char *start = s->p;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9') s->p++;
    return s->p > start ? 0 : -1;
}

static int scan_number(struct scan *s) {
    const unsigned char *start = s->p;
    if (*s->p == '-') s->p++;
    if (s->p < s->end && *s->p == '0') s->p++;
    else if (scan_digits(s) < 0) return -1;
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (scan_digits(s) < 0) return -1;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) return -1; /* may overflow: Python decides */
    return s->p - start <= SCAN_MAX_NUMBER ? 0 : -1;
}

static int scan_literal(struct scan *s, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0) return -1;
    s->p += n;
    return 0;
}

static int scan_value(struct scan *s, int depth) {
    const unsigned char *raw;
    size_t len;
    int escaped;
    if (s->p >= s->end) return -1;
    switch (*s->p) {
    case '"':
        return scan_string(s, &raw, &len, &escaped);
    case 't':
        return scan_literal(s, "true");
    case 'f':
        return scan_literal(s, "false");
    case 'n':
        return scan_literal(s, "null");
    case '{':
    case '[': {
        unsigned char close = *s->p == '{' ? '}' : ']';
        if (depth >= SCAN_MAX_DEPTH) return -1;
        s->p++;
        scan_ws(s);
        if (s->p < s->end && *s->p == close) { s->p++; return 0; }
        for (;;) {
            if (close == '}') {
                if (s->p >= s->end || *s->p != '"' || scan_string(s, &raw, &len, &escaped) < 0) return -1;
                scan_ws(s);
                if (s->p >= s->end || *s->p != ':') return -1;
                s->p++;
                scan_ws(s);
            }
            if (scan_value(s, depth + 1) < 0) return -1;
            scan_ws(s);
            if (s->p >= s->end) return -1;
            if (*s->p == close) { s->p++; return 0; }
            if (*s->p != ',') return -1;
            s->p++;
            scan_ws(s);
        }
    }
    default:
        if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9')) return scan_number(s);
        return -1;
    }
}

/* The plain printable-ASCII string value of top-level `key` in a JSON object: SCAN_FOUND and
 * `out` set, SCAN_ABSENT (empty input reads as {}, as the plugin reads it), or SCAN_UNUSUAL. */
static int top_level_string(const char *data, size_t size, const char *key, char *out, size_t outlen) {
    struct scan s = {(const unsigned char *)data, (const unsigned char *)data + size};
    const unsigned char *raw;
    size_t len, keylen = strlen(key);
    int escaped, found = SCAN_ABSENT;
    if (size == 0) return SCAN_ABSENT;
    scan_ws(&s);
    if (s.p >= s.end || *s.p != '{') return SCAN_UNUSUAL;
    s.p++;
    scan_ws(&s);
    if (s.p < s.end && *s.p == '}') {
        s.p++;
    } else {
        for (;;) {
            if (s.p >= s.end || *s.p != '"' || scan_string(&s, &raw, &len, &escaped) < 0 || escaped)
                return SCAN_UNUSUAL; /* an escaped key may spell `key` */
            scan_ws(&s);
            if (s.p >= s.end || *s.p != ':') return SCAN_UNUSUAL;
            s.p++;
            scan_ws(&s);
            if (len == keylen && memcmp(raw, key, len) == 0) {
                if (found || s.p >= s.end || *s.p != '"' || scan_string(&s, &raw, &len, &escaped) < 0 || escaped ||
                    len >= outlen)
                    return SCAN_UNUSUAL; /* twice, not a string, escaped or too long */
                for (size_t i = 0; i < len; i++)
                    if (raw[i] < 0x20 || raw[i] > 0x7e) return SCAN_UNUSUAL;
                memcpy(out, raw, len);
                out[len] = 0;
                found = SCAN_FOUND;
            } else if (scan_value(&s, 1) < 0) {
                return SCAN_UNUSUAL;
            }
            scan_ws(&s);
            if (s.p >= s.end) return SCAN_UNUSUAL;
            if (*s.p == '}') { s.p++; break; }
            if (*s.p != ',') return SCAN_UNUSUAL;
            s.p++;
            scan_ws(&s);
        }
    }
    scan_ws(&s);
    return s.p == s.end ? found : SCAN_UNUSUAL;
}

enum { CONNECTED, NO_SERVER, BUSY };

/* Blocking connect, bounded by SO_SNDTIMEO: while the server's backlog is full the kernel
 * queues the caller, and gives EAGAIN when CONNECT_WAIT has passed. Only a missing socket file
 * or nobody listening (ECONNREFUSED) or an unusable path means "no server". The socket then
 * keeps CALL_TIMEOUT for every read and write of the call. */
static int connect_bounded(int fd, const struct sockaddr_un *addr) {
    struct timeval wait = {.tv_sec = CONNECT_WAIT}, call = {.tv_sec = CALL_TIMEOUT};
    if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &wait, sizeof wait) < 0) return NO_SERVER;
    while (connect(fd, (const struct sockaddr *)addr, sizeof *addr) < 0) {
        if (errno == EINTR) continue;
        return errno == EAGAIN ? BUSY : NO_SERVER;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &call, sizeof call) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &call, sizeof call) < 0)
        return BUSY;
    return CONNECTED;
}

static void fallback(const struct buf *in, char **argv) {
    /* stdin was consumed: hand the Python launcher the same bytes on a memory file */
    int fd = memfd_create("cri-net-stdin", 0);
    if (fd >= 0 && write_all(fd, in->data, in->len) == 0 && lseek(fd, 0, SEEK_SET) == 0 && dup2(fd, 0) == 0) {
        if (fd != 0) close(fd);
        argv[0] = FALLBACK;
        execv(FALLBACK, argv);
    }
    if (errno == ENOENT) { /* no Python on this node: only cri-net serve can do the work */
        char version[64];
        if (top_level_string(in->data, in->len, "cniVersion", version, sizeof version) != SCAN_FOUND || !version[0])
            strcpy(version, "1.0.0");
        printf("{\"cniVersion\":\"%s\",\"code\":11,\"msg\":\"cri-net serve is not answering on %s and this "
               "node has no in-process fallback (%s): try again later\"}\n", version, socket_path, FALLBACK);
        exit(1);
    }
    fprintf(stdout, "{\"cniVersion\":\"1.0.0\",\"code\":999,\"msg\":\"cri-net launcher: cannot run %s: %s\"}\n",
            FALLBACK, strerror(errno));
    exit(1);
}

#ifdef SCAN_TEST
/* the unit tests' view of the scanner: prints "<result> <value>" for stdin */
int main(void) {
    struct buf in = {0};
    char value[108] = "";
    if (read_all(0, &in) < 0) return 2;
    int found = top_level_string(in.data ? in.data : "", in.len, "daemonSocket", value, sizeof value);
    printf("%d %s", found, value);
    return 0;
}
#else
/* VERSION: {"cniVersion": <the config's, when supported, else the newest>, "supportedVersions": [...]}
 * as json.dumps prints it; a config the scanner is not sure of goes to Python. */
static void answer_version(const struct buf *in, char **argv) {
    static const char *const versions[] = {CNI_VERSIONS};
    const size_t n = sizeof versions / sizeof versions[0];
    char wanted[64];
    int found = top_level_string(in->data, in->len, "cniVersion", wanted, sizeof wanted);
    if (found == SCAN_UNUSUAL) fallback(in, argv);
    const char *version = versions[n - 1];
    for (size_t i = 0; found == SCAN_FOUND && i < n; i++)
        if (strcmp(wanted, versions[i]) == 0) version = versions[i];
    printf("{\"cniVersion\": \"%s\", \"supportedVersions\": [", version);
    for (size_t i = 0; i < n; i++) printf("%s\"%s\"", i ? ", " : "", versions[i]);
    printf("]}\n");
    exit(fflush(stdout) == 0 ? 0 : 1);
}

int main(int argc, char **argv) {
    (void)argc;
    struct buf in = {0}, req = {0}, reply = {0};
    if (read_all(0, &in) < 0 || in.len > MAX_INPUT) fallback(&in, argv);
    const char *cmd = getenv("CNI_COMMAND");
    if (cmd && strcmp(cmd, "VERSION") == 0) answer_version(&in, argv);
    const char *caller = getenv("CRI_NET_CALLER"); /* run by cri-net itself: Python refuses */
    if (!cmd || (caller && *caller) || !(strcmp(cmd, "ADD") == 0 || strcmp(cmd, "DEL") == 0 || strcmp(cmd, "CHECK") == 0 ||
                  strcmp(cmd, "STATUS") == 0 || strcmp(cmd, "GC") == 0))
        fallback(&in, argv);

    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int found = top_level_string(in.data, in.len, "daemonSocket", addr.sun_path, sizeof addr.sun_path);
    if (found == SCAN_UNUSUAL || (found == SCAN_FOUND && addr.sun_path[0] == 0)) fallback(&in, argv);
    if (found == SCAN_ABSENT) strcpy(addr.sun_path, DEFAULT_SOCKET);
    socket_path = addr.sun_path;

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fallback(&in, argv);
    int state = connect_bounded(fd, &addr);
    /* no Python here: wait (bounded) for a server to come up rather than fail at once */
    for (int i = 0; state == NO_SERVER && i < SERVER_WAIT * 5 && access(FALLBACK, X_OK) != 0; i++) {
        usleep(200000);
        close(fd);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) fallback(&in, argv);
        state = connect_bounded(fd, &addr);
    }
    int busy = state == BUSY;
    if (state == NO_SERVER) fallback(&in, argv);

    if (append(&req, "CRINET1\n", 8) < 0) fallback(&in, argv);
    for (char **e = environ; *e; e++)
        if (strncmp(*e, "CNI_", 4) == 0 && append(&req, *e, strlen(*e) + 1) < 0) fallback(&in, argv);
    if (append(&req, "", 1) < 0 || append(&req, in.data, in.len) < 0) fallback(&in, argv);

    int broken = busy || write_all(fd, req.data, req.len) < 0 || shutdown(fd, SHUT_WR) < 0 ||
                 read_all(fd, &reply) < 0;
    char *nl = (broken || reply.len == 0) ? NULL : memchr(reply.data, '\n', reply.len);
    if (!nl || nl == reply.data) {
        if (strcmp(cmd, "ADD") != 0) fallback(&in, argv); /* idempotent: safe to run again here */
        char version[64];
        if (top_level_string(in.data, in.len, "cniVersion", version, sizeof version) != SCAN_FOUND || !version[0])
            strcpy(version, "1.0.0");
        printf("{\"cniVersion\":\"%s\",\"code\":11,\"msg\":\"%s: %s\"}\n", version, addr.sun_path,
               busy ? "cri-net serve is busy" : "no answer from cri-net serve");
        return 1;
    }
    *nl = 0;
    int rc = atoi(reply.data);
    size_t head = (size_t)(nl - reply.data) + 1;
    if (write_all(1, reply.data + head, reply.len - head) < 0) return 1;
    return rc;
}
#endif
