/*
 * upstream.c - a small, fast HTTP/1.1 origin server used as the benchmark
 * upstream for native-bench. It exists so that the upstream is never the
 * bottleneck when we race proxies against each other: epoll, non-blocking
 * sockets, keep-alive, pipelining, zero-copy bodies from a preallocated
 * buffer.
 *
 * Routes:
 *   GET  /  or /small          ~100 byte body
 *   GET  /cached               the same body with Cache-Control: public, max-age=3600
 *   GET  /bytes/N or /size/N   N byte body (N <= --max-bytes, default 8 MiB)
 *   POST /echo                 echoes the request body (Content-Length or
 *                              chunked) back with a Content-Length
 *   anything else              404
 *
 * Usage: upstream [--host 127.0.0.1] [--port N] [--threads N] [--max-bytes N]
 *   --port 0 picks a free port. Prints "listening PORT" once ready.
 *   --threads N runs N event loops, each with its own SO_REUSEPORT listener
 *   (the kernel spreads connections across them).
 *
 * It parses just enough HTTP for a benchmark: request line, headers,
 * Content-Length, Transfer-Encoding: chunked, Connection. It is not a
 * general-purpose server.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_HEADER_BYTES (64 * 1024)
#define MAX_REQ_BODY (64 * 1024 * 1024)
/* Stop parsing further pipelined requests once this many response bytes are
 * queued; keeps memory bounded when a client pipelines many large GETs. */
#define OUT_HIGH_WATER (4 * 1024 * 1024)
/* Read buffers start small (c10k means 10,000 of them) and double while a
 * large body arrives; big buffers are freed again once the connection idles. */
#define READ_INITIAL (4 * 1024)
#define READ_MIN_FREE (2 * 1024)
#define KEEP_BUFFER_MAX (256 * 1024)
#define MAX_IOV 64

static const char SMALL_BODY[] =
    "Hello from the native-bench upstream. This body is exactly one hundred "
    "bytes long, padded out.......\n";

static char *g_bytes;           /* preallocated body for /bytes/N */
static size_t g_max_bytes = 8u * 1024 * 1024;

/* A queued piece of output. ext != NULL points at memory we do not own
 * (g_bytes, SMALL_BODY); ext == NULL means "the next len bytes of wbuf".
 * Keeping owned bytes in one FIFO buffer lets pipelined small responses
 * coalesce into a single write. */
typedef struct {
    const char *ext;
    size_t len;
} seg_t;

typedef struct {
    int fd;
    /* read side */
    char *rbuf;
    size_t rcap, rstart, rlen; /* unparsed bytes are rbuf[rstart..rlen) */
    size_t scan_from;          /* where to resume searching for \r\n\r\n */
    int rd_eof;
    /* write side */
    char *wbuf;
    size_t wcap, whead, wlen; /* owned bytes are wbuf[whead..wlen) */
    seg_t *segs;
    size_t scap, shead, slen; /* queued segments are segs[shead..slen) */
    size_t seg_off;           /* bytes of segs[shead] already written */
    size_t out_bytes;         /* total bytes queued and not yet written */
    int close_after;          /* close once output drains */
    int continue_sent;        /* 100 Continue already sent for the current request */
} conn_t;

typedef struct {
    int listen_fd;
    int epfd;
} loop_t;

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return q;
}

/* ---------- output queue ---------- */

static void push_seg(conn_t *c, const char *ext, size_t len) {
    if (len == 0) return;
    /* Merge consecutive owned segments so small responses coalesce. */
    if (!ext && c->slen > c->shead && c->segs[c->slen - 1].ext == NULL) {
        c->segs[c->slen - 1].len += len;
    } else {
        if (c->slen == c->scap) {
            if (c->shead > 0) { /* compact before growing */
                memmove(c->segs, c->segs + c->shead, (c->slen - c->shead) * sizeof(seg_t));
                c->slen -= c->shead;
                c->shead = 0;
            }
            if (c->slen == c->scap) {
                c->scap = c->scap ? c->scap * 2 : 16;
                c->segs = xrealloc(c->segs, c->scap * sizeof(seg_t));
            }
        }
        c->segs[c->slen].ext = ext;
        c->segs[c->slen].len = len;
        c->slen++;
    }
    c->out_bytes += len;
}

/* Copy bytes into the owned output buffer and queue them. */
static void out_copy(conn_t *c, const char *p, size_t len) {
    if (c->wlen + len > c->wcap) {
        if (c->whead > 0) {
            memmove(c->wbuf, c->wbuf + c->whead, c->wlen - c->whead);
            c->wlen -= c->whead;
            c->whead = 0;
        }
        if (c->wlen + len > c->wcap) {
            size_t ncap = c->wcap ? c->wcap : 1024;
            while (ncap < c->wlen + len) ncap *= 2;
            c->wbuf = xrealloc(c->wbuf, ncap);
            c->wcap = ncap;
        }
    }
    memcpy(c->wbuf + c->wlen, p, len);
    c->wlen += len;
    push_seg(c, NULL, len);
}

/* Write as much queued output as the socket takes.
 * Returns 1 when everything is written, 0 on EAGAIN, -1 on error. */
static int flush_out(conn_t *c) {
    while (c->shead < c->slen) {
        struct iovec iov[MAX_IOV];
        int n = 0;
        size_t owned = c->whead; /* owned segments consume wbuf in order */
        for (size_t i = c->shead; i < c->slen && n < MAX_IOV; i++, n++) {
            const seg_t *s = &c->segs[i];
            size_t skip = (i == c->shead) ? c->seg_off : 0;
            if (s->ext) {
                iov[n].iov_base = (void *)(s->ext + skip);
            } else {
                iov[n].iov_base = c->wbuf + owned + skip;
                owned += s->len;
            }
            iov[n].iov_len = s->len - skip;
        }
        ssize_t w = writev(c->fd, iov, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            return -1;
        }
        size_t left = (size_t)w;
        c->out_bytes -= left;
        /* Retire fully written segments; remember offset into a partial one. */
        while (left > 0) {
            seg_t *s = &c->segs[c->shead];
            size_t rem = s->len - c->seg_off;
            size_t take = left < rem ? left : rem;
            if (!s->ext) c->whead += take;
            c->seg_off += take;
            left -= take;
            if (c->seg_off == s->len) {
                c->shead++;
                c->seg_off = 0;
            }
        }
    }
    c->shead = c->slen = 0;
    c->whead = c->wlen = 0;
    if (c->wcap > KEEP_BUFFER_MAX) { /* drop the buffer a big echo needed */
        free(c->wbuf);
        c->wbuf = NULL;
        c->wcap = 0;
    }
    return 1;
}

/* ---------- request parsing ---------- */

static int hdr_is(const char *name, size_t nlen, const char *want) {
    size_t wl = strlen(want);
    return nlen == wl && strncasecmp(name, want, wl) == 0;
}

/* Case-insensitive "does this comma-separated header value contain token". */
static int value_has_token(const char *v, size_t vlen, const char *tok) {
    size_t tl = strlen(tok);
    for (size_t i = 0; i + tl <= vlen; i++) {
        if (strncasecmp(v + i, tok, tl) == 0) return 1;
    }
    return 0;
}

/* Decode a chunked body starting at p (len bytes available).
 * Returns bytes consumed (including trailers) when complete, 0 when more
 * data is needed, -1 on a malformed body. Decoded data is appended to *out.
 * It re-decodes from the start on every call; fine for a benchmark upstream
 * (wrk and the proxies send Content-Length for the scenarios we run). */
static long decode_chunked(const char *p, size_t len, char **out, size_t *out_len) {
    size_t pos = 0;
    *out_len = 0;
    for (;;) {
        const char *eol = memmem(p + pos, len - pos, "\r\n", 2);
        if (!eol) return 0;
        size_t size = 0;
        const char *q = p + pos;
        int digits = 0;
        while (q < eol) {
            int d;
            if (*q >= '0' && *q <= '9') d = *q - '0';
            else if (*q >= 'a' && *q <= 'f') d = *q - 'a' + 10;
            else if (*q >= 'A' && *q <= 'F') d = *q - 'A' + 10;
            else break; /* chunk extension or whitespace: ignore the rest */
            size = size * 16 + (size_t)d;
            if (size > MAX_REQ_BODY) return -1;
            digits++;
            q++;
        }
        if (!digits) return -1;
        pos = (size_t)(eol - p) + 2;
        if (size == 0) {
            /* trailers: lines until an empty line */
            for (;;) {
                const char *e = memmem(p + pos, len - pos, "\r\n", 2);
                if (!e) return 0;
                size_t linelen = (size_t)(e - (p + pos));
                pos += linelen + 2;
                if (linelen == 0) return (long)pos;
            }
        }
        if (len - pos < size + 2) return 0;
        if (*out_len + size > MAX_REQ_BODY) return -1;
        *out = xrealloc(*out, *out_len + size + 1);
        memcpy(*out + *out_len, p + pos, size);
        *out_len += size;
        pos += size;
        if (p[pos] != '\r' || p[pos + 1] != '\n') return -1;
        pos += 2;
    }
}

static void respond_simple(conn_t *c, int status, const char *reason, int keep_alive) {
    char h[256];
    int n = snprintf(h, sizeof h,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n%s\r\n%s\n",
                     status, reason, strlen(reason) + 1,
                     keep_alive ? "" : "Connection: close\r\n", reason);
    out_copy(c, h, (size_t)n);
    if (!keep_alive) c->close_after = 1;
}

/* Header block for a 200 response with a known length. */
static void respond_head(conn_t *c, size_t len, const char *ctype, int keep_alive, int http10, const char *extra) {
    char h[320];
    const char *conn_hdr = "";
    if (!keep_alive) conn_hdr = "Connection: close\r\n";
    else if (http10) conn_hdr = "Connection: keep-alive\r\n";
    int n = snprintf(h, sizeof h, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n",
                     ctype, len, extra, conn_hdr);
    out_copy(c, h, (size_t)n);
    if (!keep_alive) c->close_after = 1;
}

/* Parse exactly one complete request from the read buffer and queue its
 * response. Returns 1 if a request was handled, 0 if more bytes are needed,
 * -1 if the connection must be closed right after flushing. */
static int handle_one(conn_t *c) {
    char *base = c->rbuf + c->rstart;
    size_t avail = c->rlen - c->rstart;
    if (avail == 0) return 0;

    size_t from = c->scan_from > 3 ? c->scan_from - 3 : 0;
    char *end = from < avail ? memmem(base + from, avail - from, "\r\n\r\n", 4) : NULL;
    if (!end) {
        c->scan_from = avail;
        if (avail > MAX_HEADER_BYTES) {
            respond_simple(c, 431, "Request Header Fields Too Large", 0);
            return -1;
        }
        return 0;
    }
    size_t head_len = (size_t)(end - base) + 4;

    /* request line: METHOD SP TARGET SP VERSION */
    char *line_end = memmem(base, head_len, "\r\n", 2);
    char *sp1 = memchr(base, ' ', (size_t)(line_end - base));
    char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(line_end - sp1 - 1)) : NULL;
    if (!sp1 || !sp2) {
        respond_simple(c, 400, "Bad Request", 0);
        return -1;
    }
    const char *method = base;
    size_t mlen = (size_t)(sp1 - base);
    const char *path = sp1 + 1;
    size_t plen = (size_t)(sp2 - path);
    int http10 = (size_t)(line_end - sp2 - 1) == 8 && memcmp(sp2 + 1, "HTTP/1.0", 8) == 0;
    int keep_alive = !http10;

    /* headers */
    long long content_length = -1;
    int chunked = 0;
    int expect_continue = 0;
    char *p = line_end + 2;
    while (p < end) {
        char *le = memmem(p, (size_t)(end + 2 - p), "\r\n", 2);
        char *colon = memchr(p, ':', (size_t)(le - p));
        if (colon) {
            size_t nlen = (size_t)(colon - p);
            char *v = colon + 1;
            while (v < le && (*v == ' ' || *v == '\t')) v++;
            size_t vlen = (size_t)(le - v);
            if (hdr_is(p, nlen, "content-length")) {
                long long cl = 0;
                if (vlen == 0) cl = -2;
                for (size_t i = 0; i < vlen && cl >= 0; i++) {
                    if (v[i] == ' ' || v[i] == '\t') break;
                    if (v[i] < '0' || v[i] > '9' || cl > MAX_REQ_BODY) cl = -2;
                    else cl = cl * 10 + (v[i] - '0');
                }
                if (cl < 0 || cl > MAX_REQ_BODY) {
                    respond_simple(c, cl < 0 ? 400 : 413, cl < 0 ? "Bad Request" : "Payload Too Large", 0);
                    return -1;
                }
                content_length = cl;
            } else if (hdr_is(p, nlen, "transfer-encoding")) {
                if (value_has_token(v, vlen, "chunked")) chunked = 1;
            } else if (hdr_is(p, nlen, "expect")) {
                if (value_has_token(v, vlen, "100-continue")) expect_continue = 1;
            } else if (hdr_is(p, nlen, "connection")) {
                if (value_has_token(v, vlen, "close")) keep_alive = 0;
                else if (value_has_token(v, vlen, "keep-alive")) keep_alive = 1;
            }
        }
        p = le + 2;
    }

    /* Clients such as curl wait (up to a second) for this before sending a
     * large body. */
    int body_expected = chunked || content_length > 0;
    if (body_expected && expect_continue && !c->continue_sent && !http10) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        out_copy(c, cont, sizeof cont - 1);
        c->continue_sent = 1;
    }

    /* body: wait until it is fully buffered */
    const char *body = NULL;
    size_t body_len = 0;
    char *decoded = NULL;
    size_t total = head_len;
    if (chunked) {
        long used = decode_chunked(base + head_len, avail - head_len, &decoded, &body_len);
        if (used < 0) {
            free(decoded);
            respond_simple(c, 400, "Bad Request", 0);
            return -1;
        }
        if (used == 0) {
            free(decoded);
            return 0;
        }
        body = decoded;
        total += (size_t)used;
    } else if (content_length > 0) {
        if (avail - head_len < (size_t)content_length) return 0;
        body = base + head_len;
        body_len = (size_t)content_length;
        total += body_len;
    }

    /* route (query string ignored) */
    const char *q = memchr(path, '?', plen);
    if (q) plen = (size_t)(q - path);
    int is_head = mlen == 4 && memcmp(method, "HEAD", 4) == 0;

    if ((plen == 1 && path[0] == '/') || (plen == 6 && memcmp(path, "/small", 6) == 0)) {
        respond_head(c, sizeof SMALL_BODY - 1, "text/plain", keep_alive, http10, "");
        if (!is_head) push_seg(c, SMALL_BODY, sizeof SMALL_BODY - 1);
    } else if (plen == 7 && memcmp(path, "/cached", 7) == 0) {
        /* The small body, cacheable by a shared cache for an hour (the "cached" scenario). */
        respond_head(c, sizeof SMALL_BODY - 1, "text/plain", keep_alive, http10, "Cache-Control: public, max-age=3600\r\n");
        if (!is_head) push_seg(c, SMALL_BODY, sizeof SMALL_BODY - 1);
    } else if ((plen > 7 && memcmp(path, "/bytes/", 7) == 0) || (plen > 6 && memcmp(path, "/size/", 6) == 0)) {
        const char *num = path[1] == 'b' ? path + 7 : path + 6;
        size_t n = 0;
        int ok = 1;
        for (const char *d = num; d < path + plen; d++) {
            if (*d < '0' || *d > '9' || n > g_max_bytes) { ok = 0; break; }
            n = n * 10 + (size_t)(*d - '0');
        }
        if (!ok || n > g_max_bytes) {
            respond_simple(c, 400, "Bad Size", keep_alive);
        } else {
            respond_head(c, n, "application/octet-stream", keep_alive, http10, "");
            if (!is_head) push_seg(c, g_bytes, n); /* zero-copy from the shared buffer */
        }
    } else if (plen == 5 && memcmp(path, "/echo", 5) == 0) {
        respond_head(c, body_len, "application/octet-stream", keep_alive, http10, "");
        if (!is_head) out_copy(c, body, body_len);
    } else {
        respond_simple(c, 404, "Not Found", keep_alive);
    }
    free(decoded);

    c->rstart += total;
    c->scan_from = 0;
    c->continue_sent = 0;
    return keep_alive ? 1 : -1;
}

/* Handle every complete buffered request, respecting the output high-water
 * mark. Returns 1 if it stopped because of the high-water mark (so complete
 * requests may still be buffered), 0 otherwise. */
static int process_requests(conn_t *c) {
    int limited = 0;
    while (!c->close_after) {
        if (c->out_bytes >= OUT_HIGH_WATER) {
            limited = 1;
            break;
        }
        int r = handle_one(c);
        if (r < 0) c->close_after = 1;
        if (r <= 0) break;
    }
    /* Reclaim consumed read-buffer space. */
    if (c->rstart == c->rlen) {
        c->rstart = c->rlen = 0;
        if (c->rcap > KEEP_BUFFER_MAX) { /* drop the buffer a big body needed */
            free(c->rbuf);
            c->rbuf = NULL;
            c->rcap = 0;
        }
    } else if (c->rstart > c->rcap / 2) {
        memmove(c->rbuf, c->rbuf + c->rstart, c->rlen - c->rstart);
        c->rlen -= c->rstart;
        c->rstart = 0;
    }
    return limited;
}

/* ---------- connection lifecycle ---------- */

static void conn_close(loop_t *L, conn_t *c) {
    epoll_ctl(L->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->rbuf);
    free(c->wbuf);
    free(c->segs);
    free(c);
}

/* Called for every epoll event on a connection (edge-triggered): read,
 * answer, write, until the socket would block in the direction we need. */
static void conn_service(loop_t *L, conn_t *c) {
    for (;;) {
        int progress = 0;
        int read_paused = c->out_bytes >= OUT_HIGH_WATER || c->close_after;

        if (!c->rd_eof && !read_paused) {
            if (c->rcap - c->rlen < READ_MIN_FREE) {
                if (c->rstart > 0) {
                    memmove(c->rbuf, c->rbuf + c->rstart, c->rlen - c->rstart);
                    c->rlen -= c->rstart;
                    c->rstart = 0;
                }
                if (c->rcap - c->rlen < READ_MIN_FREE) {
                    c->rcap = c->rcap ? c->rcap * 2 : READ_INITIAL;
                    c->rbuf = xrealloc(c->rbuf, c->rcap);
                }
            }
            ssize_t n = read(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen);
            if (n > 0) {
                c->rlen += (size_t)n;
                progress = 1;
            } else if (n == 0) {
                c->rd_eof = 1;
            } else if (errno == EINTR) {
                progress = 1;
            } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
                conn_close(L, c);
                return;
            }
        }

        int limited = process_requests(c);

        int f = flush_out(c);
        if (f < 0) {
            conn_close(L, c);
            return;
        }
        if (f == 1) {
            if (c->close_after) { /* Connection: close or a protocol error */
                conn_close(L, c);
                return;
            }
            /* Output drained. With edge triggering no new event comes for
             * bytes already buffered (by us or in the socket), so go round
             * again if we stopped early for backpressure. */
            if (limited || read_paused) continue;
            if (c->rd_eof) { /* peer half-closed and got all its answers */
                conn_close(L, c);
                return;
            }
        }
        if (!progress) return;
    }
}

static void accept_all(loop_t *L) {
    for (;;) {
        int fd = accept4(L->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR) continue;
            /* EAGAIN: done; EMFILE etc.: drop this round, retry on next event */
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn_t *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
        if (epoll_ctl(L->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            free(c);
        }
    }
}

static void *loop_run(void *arg) {
    loop_t *L = arg;
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(L->epfd, evs, 256, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) accept_all(L);
            else conn_service(L, evs[i].data.ptr);
        }
    }
    return NULL;
}

static int make_listener(const char *host, int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) die("SO_REUSEPORT");
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
        fprintf(stderr, "bad --host %s (IPv4 address expected)\n", host);
        exit(2);
    }
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    if (listen(fd, 65535) < 0) die("listen");
    return fd;
}

static void usage(void) {
    fprintf(stderr,
            "usage: upstream [--host 127.0.0.1] [--port N] [--threads N] [--max-bytes N]\n"
            "  --port 0 (default) picks a free port; prints 'listening PORT' when ready\n"
            "  --threads N  event loops, one SO_REUSEPORT listener each (default 1)\n"
            "  --max-bytes  largest /bytes/N body, preallocated (default 8388608)\n");
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    int port = 0, threads = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage();
            return 0;
        } else if (!strcmp(a, "--host") && v) {
            host = v;
            i++;
        } else if (!strcmp(a, "--port") && v) {
            port = atoi(v);
            i++;
        } else if (!strcmp(a, "--threads") && v) {
            threads = atoi(v);
            i++;
        } else if (!strcmp(a, "--max-bytes") && v) {
            g_max_bytes = strtoull(v, NULL, 10);
            i++;
        } else {
            usage();
            return 2;
        }
    }
    if (threads < 1) threads = 1;
    if (port < 0 || port > 65535) {
        usage();
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* a peer that vanishes mid-write is normal under load */

    /* Fill the shared body with printable bytes so it is easy to eyeball. */
    g_bytes = malloc(g_max_bytes ? g_max_bytes : 1);
    if (!g_bytes) die("malloc");
    for (size_t i = 0; i < g_max_bytes; i++) g_bytes[i] = (char)('a' + i % 26);

    loop_t *loops = calloc((size_t)threads, sizeof *loops);
    for (int t = 0; t < threads; t++) {
        loops[t].listen_fd = make_listener(host, port);
        if (port == 0) { /* the first listener chose the port; the rest share it */
            struct sockaddr_in a;
            socklen_t al = sizeof a;
            getsockname(loops[t].listen_fd, (struct sockaddr *)&a, &al);
            port = ntohs(a.sin_port);
        }
        loops[t].epfd = epoll_create1(EPOLL_CLOEXEC);
        if (loops[t].epfd < 0) die("epoll_create1");
        struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = NULL};
        if (epoll_ctl(loops[t].epfd, EPOLL_CTL_ADD, loops[t].listen_fd, &ev) < 0) die("epoll_ctl");
    }
    printf("listening %d\n", port);
    fflush(stdout);

    for (int t = 1; t < threads; t++) {
        pthread_t th;
        if (pthread_create(&th, NULL, loop_run, &loops[t]) != 0) die("pthread_create");
        pthread_detach(th);
    }
    loop_run(&loops[0]);
    return 0;
}
