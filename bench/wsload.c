/*
 * wsload: a small, single-threaded, epoll-based WebSocket / HTTP load generator.
 *
 * Built by bench/run (gcc -O2). Modes:
 *
 *   echo   N connections do the WebSocket upgrade, then each runs a closed loop:
 *          send one masked frame, wait for one reply message, send the next.
 *          A warm-up (--warmup s) is followed by the measured window (--duration s).
 *          Reports messages/s and latency percentiles (microseconds).
 *   churn  --conns parallel "lives": TCP connect, handshake, one echo, close handshake
 *          (send close frame, wait for the server's close frame or EOF), close, repeat.
 *          Reports completed connections/s.
 *   idle   Opens --conns connections, each sends one message and reads the reply,
 *          then prints "READY ok=N failed=M" on stdout and holds them idle until a line
 *          (or EOF) arrives on stdin or --hold seconds pass; then closes everything.
 *   http   N keep-alive HTTP/1.1 connections run closed-loop GET requests to --path.
 *          Reports requests/s and latency percentiles.
 *
 * Output: one JSON object on stdout (after the READY line in idle mode).
 *
 * Everything is bounded: phases have deadlines and an alarm() kills the process if
 * anything hangs. Only the given host is contacted (bench/run always uses 127.0.0.1).
 *
 * Frames from the server may be fragmented and may use 7/16/64-bit lengths; they are
 * parsed properly. One reply *message* (final fragment) counts as the reply to a request,
 * whatever its length (dotwist's seed app prefixes "[Durable Object]: ").
 *
 * For speed the request frame is built once with one random masking key and re-sent;
 * that is a valid client frame (servers cannot tell), and it keeps the generator cheap.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { M_ECHO, M_CHURN, M_IDLE, M_HTTP };
enum { S_FREE, S_CONNECTING, S_HANDSHAKE, S_OPEN, S_CLOSE_WAIT };
enum { P_CONNECT, P_WARMUP, P_MEASURE, P_HOLD, P_DONE };

#define MAX_FRAME (64u << 20)
#define STDIN_TAG 0xFFFFFFFFu

typedef struct conn {
    int fd;
    int state;
    uint32_t gen;
    unsigned char *rbuf;
    size_t rlen, rcap;
    unsigned char *obuf; /* pending output */
    size_t olen, ooff, ocap;
    int want_out;
    int awaiting;  /* a request is outstanding */
    int replied;   /* idle: got its one reply */
    int frag;      /* inside a fragmented data message */
    uint64_t t_sent;
    uint64_t t_start; /* churn: start of this connection's life */
    /* http response parsing */
    int http_until_eof;
    int no_next; /* http: the server closes after this response; don't send on this socket */
} conn;

/* ---- options ---- */
static int mode = -1;
static const char *host = "127.0.0.1";
static int port = 0;
static const char *path = "/";
static int nconns = 1;
static double warmup_s = 2.0, duration_s = 5.0;
static size_t msg_size = 32;
static int binary = 0;
static int http_close = 0; /* http: one request per connection (Connection: close) */
static int ramp = 50;
static double connect_timeout_s = 60.0;
static double hold_s = 60.0;
static double cycle_timeout_s = 5.0;
static int server_pid = 0;

/* ---- state ---- */
static int ep;
static conn *conns;
static struct sockaddr_in addr;
static unsigned char *req_frame;
static size_t req_frame_len;
static char *hs_req;
static size_t hs_req_len;
static char *http_req;
static size_t http_req_len;
static int phase = P_CONNECT;
static uint64_t t_phase_end;  /* end of the current timed phase */
static uint64_t t_meas_start, t_meas_end;
static uint64_t t_begin;

static long n_opened, n_open, n_failed, n_pending, n_replied_idle;
static long n_msgs;       /* measured replies (echo/http) or completed cycles (churn) */
static long n_msgs_total; /* all replies, including warm-up */
static long n_errors, n_server_closed, n_unsolicited, n_timeouts, n_reconnects, n_non2xx;
static long n_dropped_during_hold;
static char first_error[200];

static uint64_t *samples;
static size_t nsamples, samples_cap;

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *msg) {
    fprintf(stderr, "wsload: %s\n", msg);
    exit(2);
}

static void note_error(const char *what, int err) {
    n_errors++;
    if (!first_error[0]) {
        if (err)
            snprintf(first_error, sizeof first_error, "%s: %s", what, strerror(err));
        else
            snprintf(first_error, sizeof first_error, "%s", what);
    }
}

static void record_sample(uint64_t ns) {
    if (nsamples == samples_cap) {
        if (samples_cap >= (64u << 20)) return; /* cap memory; counts still go on */
        samples_cap = samples_cap ? samples_cap * 2 : (1u << 16);
        samples = realloc(samples, samples_cap * sizeof *samples);
        if (!samples) die("out of memory");
    }
    samples[nsamples++] = ns;
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q) die("out of memory");
    return q;
}

/* ---- epoll helpers ---- */
static void ep_set(conn *c, int idx, int op) {
    struct epoll_event ev;
    ev.events = EPOLLIN | EPOLLRDHUP | (c->want_out ? EPOLLOUT : 0);
    ev.data.u64 = ((uint64_t)c->gen << 32) | (uint32_t)idx;
    if (epoll_ctl(ep, op, c->fd, &ev) < 0) die("epoll_ctl failed");
}

static void conn_close(conn *c) {
    if (c->fd >= 0) {
        close(c->fd); /* also removes it from epoll */
        c->fd = -1;
    }
    if (c->state == S_CONNECTING || c->state == S_HANDSHAKE) n_pending--;
    if (c->state == S_OPEN || c->state == S_CLOSE_WAIT) n_open--;
    c->state = S_FREE;
    c->gen++;
    c->rlen = 0;
    c->olen = c->ooff = 0;
    c->want_out = 0;
    c->awaiting = 0;
    c->frag = 0;
    c->http_until_eof = 0;
}

/* Send bytes: write directly if nothing is queued, queue the rest; returns -1 on a dead socket. */
static int conn_send(conn *c, int idx, const void *data, size_t len) {
    const unsigned char *p = data;
    if (c->olen == c->ooff) {
        c->olen = c->ooff = 0;
        while (len > 0) {
            ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
            if (n > 0) {
                p += n;
                len -= (size_t)n;
            } else if (n < 0 && errno == EINTR) {
                continue;
            } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                break;
            } else {
                return -1;
            }
        }
        if (len == 0) return 0;
    }
    if (c->olen + len > c->ocap) {
        /* compact first */
        if (c->ooff) {
            memmove(c->obuf, c->obuf + c->ooff, c->olen - c->ooff);
            c->olen -= c->ooff;
            c->ooff = 0;
        }
        if (c->olen + len > c->ocap) {
            c->ocap = (c->olen + len) * 2;
            c->obuf = xrealloc(c->obuf, c->ocap);
        }
    }
    memcpy(c->obuf + c->olen, p, len);
    c->olen += len;
    if (!c->want_out) {
        c->want_out = 1;
        ep_set(c, idx, EPOLL_CTL_MOD);
    }
    return 0;
}

static int conn_flush(conn *c, int idx) {
    while (c->ooff < c->olen) {
        ssize_t n = send(c->fd, c->obuf + c->ooff, c->olen - c->ooff, MSG_NOSIGNAL);
        if (n > 0) {
            c->ooff += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return 0;
        } else {
            return -1;
        }
    }
    c->olen = c->ooff = 0;
    if (c->want_out) {
        c->want_out = 0;
        ep_set(c, idx, EPOLL_CTL_MOD);
    }
    return 0;
}

/* Build a masked client frame. */
static size_t build_frame(unsigned char *out, int opcode, const unsigned char *payload, size_t len) {
    size_t h = 0;
    unsigned char key[4];
    uint64_t r = rng();
    memcpy(key, &r, 4);
    out[h++] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        out[h++] = (unsigned char)(0x80 | len);
    } else if (len < 65536) {
        out[h++] = 0x80 | 126;
        out[h++] = (unsigned char)(len >> 8);
        out[h++] = (unsigned char)len;
    } else {
        out[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) out[h++] = (unsigned char)((uint64_t)len >> (8 * i));
    }
    memcpy(out + h, key, 4);
    h += 4;
    for (size_t i = 0; i < len; i++) out[h + i] = payload[i] ^ key[i & 3];
    return h + len;
}

/* ---- connection life ---- */
static void start_conn(int idx);

static void send_request(conn *c, int idx) {
    c->t_sent = now_ns();
    c->awaiting = 1;
    const void *p = mode == M_HTTP ? (const void *)http_req : (const void *)req_frame;
    size_t n = mode == M_HTTP ? http_req_len : req_frame_len;
    if (conn_send(c, idx, p, n) < 0) {
        note_error("send failed", errno);
        conn_close(c);
        if (mode == M_CHURN && phase < P_DONE) start_conn(idx);
        else if (mode == M_HTTP && phase < P_DONE) { n_reconnects++; start_conn(idx); }
    }
}

static void start_conn(int idx) {
    conn *c = &conns[idx];
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        note_error("socket", errno);
        n_failed++;
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->state = S_CONNECTING;
    c->rlen = 0;
    c->olen = c->ooff = 0;
    c->awaiting = c->replied = c->frag = 0;
    c->http_until_eof = 0;
    c->no_next = 0;
    c->want_out = 1;
    c->t_start = now_ns();
    n_pending++;
    n_opened++;
    int r = connect(fd, (struct sockaddr *)&addr, sizeof addr);
    if (r < 0 && errno != EINPROGRESS) {
        note_error("connect", errno);
        close(fd);
        c->fd = -1;
        c->state = S_FREE;
        c->gen++;
        n_pending--;
        n_failed++;
        return;
    }
    ep_set(c, idx, EPOLL_CTL_ADD);
}

static void became_open(conn *c, int idx) {
    n_pending--;
    n_open++;
    c->state = S_OPEN;
    if (mode == M_IDLE) {
        send_request(c, idx);
    } else if (mode == M_CHURN) {
        send_request(c, idx);
    } else if (phase == P_WARMUP || phase == P_MEASURE) {
        /* (http reconnects during the run) */
        send_request(c, idx);
    }
}

/* A connection failed before or during its life. */
static void conn_failed(conn *c, int idx, const char *what, int err) {
    int was_pending = (c->state == S_CONNECTING || c->state == S_HANDSHAKE);
    note_error(what, err);
    conn_close(c);
    if (mode == M_CHURN) {
        if (phase < P_DONE) start_conn(idx);
        return;
    }
    if (mode == M_HTTP && !was_pending && phase < P_DONE && phase != P_CONNECT) {
        n_reconnects++;
        start_conn(idx);
        return;
    }
    if (was_pending) n_failed++;
    else if (phase == P_HOLD) n_dropped_during_hold++;
}

static void churn_cycle_done(conn *c, int idx) {
    uint64_t t = now_ns();
    if (phase == P_MEASURE) {
        n_msgs++;
        record_sample(t - c->t_start);
    }
    n_msgs_total++;
    conn_close(c);
    if (phase < P_DONE) start_conn(idx);
}

static void on_message(conn *c, int idx) {
    uint64_t t = now_ns();
    if (mode == M_CHURN) {
        if (c->awaiting) {
            c->awaiting = 0;
            /* close handshake: status 1000 */
            unsigned char code[2] = {0x03, 0xE8};
            unsigned char f[16];
            size_t n = build_frame(f, 0x8, code, 2);
            if (conn_send(c, idx, f, n) < 0) {
                conn_failed(c, idx, "send close", errno);
                return;
            }
            c->state = S_CLOSE_WAIT;
        } else {
            n_unsolicited++;
        }
        return;
    }
    if (mode == M_IDLE) {
        if (c->awaiting) {
            c->awaiting = 0;
            c->replied = 1;
            n_replied_idle++;
        } else {
            n_unsolicited++;
        }
        return;
    }
    /* echo / http */
    if (!c->awaiting) {
        n_unsolicited++;
        return;
    }
    c->awaiting = 0;
    n_msgs_total++;
    if (phase == P_MEASURE) {
        n_msgs++;
        record_sample(t - c->t_sent);
    }
    if ((phase == P_WARMUP || phase == P_MEASURE) && !c->no_next) send_request(c, idx);
}

/* Returns -1 if the connection was closed/replaced while handling. */
static int parse_frames(conn *c, int idx) {
    size_t off = 0;
    uint32_t gen = c->gen;
    while (c->rlen - off >= 2) {
        unsigned char *p = c->rbuf + off;
        size_t avail = c->rlen - off;
        int fin = p[0] >> 7, op = p[0] & 15, masked = p[1] >> 7;
        uint64_t len = p[1] & 127;
        size_t h = 2;
        if (len == 126) {
            if (avail < 4) break;
            len = ((uint64_t)p[2] << 8) | p[3];
            h = 4;
        } else if (len == 127) {
            if (avail < 10) break;
            len = 0;
            for (int i = 0; i < 8; i++) len = (len << 8) | p[2 + i];
            h = 10;
        }
        if (len > MAX_FRAME) {
            conn_failed(c, idx, "frame too large", 0);
            return -1;
        }
        unsigned char mkey[4] = {0, 0, 0, 0};
        if (masked) {
            if (avail < h + 4) break;
            memcpy(mkey, p + h, 4);
            h += 4;
        }
        if (avail < h + len) {
            size_t need = off + h + len;
            if (need > c->rcap) {
                /* make room for the whole frame */
                if (off) {
                    memmove(c->rbuf, c->rbuf + off, c->rlen - off);
                    c->rlen -= off;
                    off = 0;
                }
                if (h + len > c->rcap) {
                    c->rcap = h + len + 4096;
                    c->rbuf = xrealloc(c->rbuf, c->rcap);
                }
            }
            break;
        }
        unsigned char *pl = p + h;
        if (masked)
            for (size_t i = 0; i < len; i++) pl[i] ^= mkey[i & 3];
        off += h + len;
        switch (op) {
        case 0x8: /* close */
            if (mode == M_CHURN && c->state == S_CLOSE_WAIT) {
                churn_cycle_done(c, idx);
                return -1;
            }
            {
                unsigned char f[200];
                size_t plen = len > 125 ? 125 : len;
                size_t n = build_frame(f, 0x8, pl, plen);
                conn_send(c, idx, f, n);
            }
            n_server_closed++;
            conn_failed(c, idx, "server sent close", 0);
            return -1;
        case 0x9: { /* ping -> pong */
            unsigned char f[200];
            size_t plen = len > 125 ? 125 : len;
            size_t n = build_frame(f, 0xA, pl, plen);
            if (conn_send(c, idx, f, n) < 0) {
                conn_failed(c, idx, "send pong", errno);
                return -1;
            }
            break;
        }
        case 0xA:
            break;
        case 0x1:
        case 0x2:
            if (fin) {
                on_message(c, idx);
                if (c->gen != gen) return -1;
            } else {
                c->frag = 1;
            }
            break;
        case 0x0:
            if (fin) {
                c->frag = 0;
                on_message(c, idx);
                if (c->gen != gen) return -1;
            }
            break;
        default:
            conn_failed(c, idx, "bad opcode from server", 0);
            return -1;
        }
    }
    if (off) {
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
    }
    return 0;
}

static int handle_handshake(conn *c, int idx) {
    c->rbuf[c->rlen] = 0; /* rcap always has one spare byte */
    char *end = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
    if (!end) {
        if (c->rlen > 16384) {
            conn_failed(c, idx, "handshake response too long", 0);
            return -1;
        }
        return 0;
    }
    if (c->rlen < 12 || memcmp(c->rbuf, "HTTP/1.1 101", 12) != 0) {
        char msg[120];
        int l = 0;
        while (l < 60 && l < (int)c->rlen && c->rbuf[l] != '\r') l++;
        snprintf(msg, sizeof msg, "handshake refused: %.*s", l, (char *)c->rbuf);
        conn_failed(c, idx, msg, 0);
        return -1;
    }
    size_t hl = (size_t)((unsigned char *)end - c->rbuf) + 4;
    memmove(c->rbuf, c->rbuf + hl, c->rlen - hl);
    c->rlen -= hl;
    uint32_t gen = c->gen;
    became_open(c, idx);
    if (c->gen != gen) return -1;
    if (c->rlen) return parse_frames(c, idx);
    return 0;
}

/* ---- HTTP responses ---- */
static const char *find_header(const char *hdrs, size_t hlen, const char *name) {
    size_t nl = strlen(name);
    const char *p = hdrs, *end = hdrs + hlen;
    while (p < end) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!eol) eol = end;
        if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t')) v++;
            return v;
        }
        p = eol + 2;
    }
    return NULL;
}

/* Returns length of a complete response at the start of rbuf, 0 if incomplete, -1 on error.
   Sets *close_after if the server will close. */
static long http_complete(conn *c, int *close_after, int *status) {
    char *b = (char *)c->rbuf;
    char *end = memmem(b, c->rlen, "\r\n\r\n", 4);
    if (!end) return c->rlen > 65536 ? -1 : 0;
    size_t hl = (size_t)(end - b) + 4;
    if (c->rlen < 12 || strncmp(b, "HTTP/1.", 7) != 0) return -1;
    *status = atoi(b + 9);
    const char *v;
    *close_after = 0;
    if ((v = find_header(b, hl, "Connection")) && strncasecmp(v, "close", 5) == 0) *close_after = 1;
    if (http_close) *close_after = 1;
    if (strncmp(b, "HTTP/1.0", 8) == 0 &&
        !((v = find_header(b, hl, "Connection")) && strncasecmp(v, "keep-alive", 10) == 0))
        *close_after = 1;
    if ((v = find_header(b, hl, "Transfer-Encoding")) && strncasecmp(v, "chunked", 7) == 0) {
        size_t p = hl;
        for (;;) {
            char *eol = memmem(b + p, c->rlen - p, "\r\n", 2);
            if (!eol) return 0;
            unsigned long sz = strtoul(b + p, NULL, 16);
            p = (size_t)(eol - b) + 2;
            if (sz == 0) {
                /* trailers (none expected) then CRLF */
                for (;;) {
                    char *e2 = memmem(b + p, c->rlen - p, "\r\n", 2);
                    if (!e2) return 0;
                    size_t ll = (size_t)(e2 - (b + p));
                    p = (size_t)(e2 - b) + 2;
                    if (ll == 0) return (long)p;
                }
            }
            if (c->rlen < p + sz + 2) return 0;
            p += sz + 2;
        }
    }
    if ((v = find_header(b, hl, "Content-Length"))) {
        size_t cl = strtoul(v, NULL, 10);
        if (c->rlen < hl + cl) {
            if (hl + cl + 1 > c->rcap) {
                c->rcap = hl + cl + 4096;
                c->rbuf = xrealloc(c->rbuf, c->rcap);
            }
            return 0;
        }
        return (long)(hl + cl);
    }
    if (*status == 204 || *status == 304 || (*status >= 100 && *status < 200)) return (long)hl;
    /* body until EOF */
    c->http_until_eof = 1;
    *close_after = 1;
    return 0;
}

static int http_parse(conn *c, int idx) {
    uint32_t gen = c->gen;
    for (;;) {
        if (c->rlen == 0) return 0;
        int close_after = 0, status = 0;
        long n = http_complete(c, &close_after, &status);
        if (n < 0) {
            conn_failed(c, idx, "bad HTTP response", 0);
            return -1;
        }
        if (n == 0) return 0;
        if (status < 200 || status >= 300) {
            n_non2xx++;
            if (!first_error[0])
                snprintf(first_error, sizeof first_error, "HTTP status %d", status);
        }
        memmove(c->rbuf, c->rbuf + n, c->rlen - (size_t)n);
        c->rlen -= (size_t)n;
        if (close_after) {
            /* count it, then reconnect */
            c->no_next = 1; /* count it, but don't send on the doomed socket */
            on_message(c, idx);
            conn_close(c);
            if (phase < P_DONE) {
                n_reconnects++;
                start_conn(idx);
            }
            return -1;
        }
        on_message(c, idx);
        if (c->gen != gen) return -1;
    }
}

static void on_eof(conn *c, int idx) {
    if (mode == M_CHURN && c->state == S_CLOSE_WAIT) {
        churn_cycle_done(c, idx);
        return;
    }
    if (mode == M_HTTP && c->state == S_OPEN && c->http_until_eof) {
        int status = atoi((char *)c->rbuf + 9);
        if (status < 200 || status >= 300) n_non2xx++;
        c->no_next = 1;
        on_message(c, idx);
        conn_close(c);
        if (phase < P_DONE) {
            n_reconnects++;
            start_conn(idx);
        }
        return;
    }
    conn_failed(c, idx, c->state == S_OPEN ? "server closed connection" : "EOF before handshake done", 0);
}

static void handle_event(uint32_t events, int idx) {
    conn *c = &conns[idx];
    uint32_t gen = c->gen;
    if (c->state == S_CONNECTING) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
            int err = 0;
            socklen_t el = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
            if (err) {
                conn_failed(c, idx, "connect", err);
                return;
            }
            c->state = S_HANDSHAKE;
            c->want_out = 0;
            ep_set(c, idx, EPOLL_CTL_MOD);
            if (mode == M_HTTP) {
                became_open(c, idx);
                return;
            }
            if (conn_send(c, idx, hs_req, hs_req_len) < 0) conn_failed(c, idx, "send handshake", errno);
        }
        return;
    }
    if (events & EPOLLOUT) {
        if (conn_flush(c, idx) < 0) {
            conn_failed(c, idx, "send", errno);
            return;
        }
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) {
        for (;;) {
            if (c->rcap - c->rlen < 2048) {
                c->rcap = c->rcap ? c->rcap * 2 : 65536;
                c->rbuf = xrealloc(c->rbuf, c->rcap);
            }
            ssize_t n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen - 1, 0);
            if (n > 0) {
                c->rlen += (size_t)n;
                int r;
                if (c->state == S_HANDSHAKE) r = handle_handshake(c, idx);
                else if (mode == M_HTTP) r = http_parse(c, idx);
                else r = parse_frames(c, idx);
                if (r < 0 || c->gen != gen) return;
                if (c->rlen < c->rcap - 1) return; /* level-triggered: the rest comes next round */
                continue;
            }
            if (n == 0) {
                on_eof(c, idx);
                return;
            }
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            conn_failed(c, idx, "recv", errno);
            return;
        }
    }
}

/* ---- process CPU ---- */
static double self_cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static double proc_cpu_s(int pid) {
    if (pid <= 0) return -1;
    char fn[64], buf[1024];
    snprintf(fn, sizeof fn, "/proc/%d/stat", pid);
    FILE *f = fopen(fn, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    p += 2; /* state */
    unsigned long ut = 0, st = 0;
    /* fields after ')' : 3 state ... 14 utime 15 stime */
    int field = 3;
    char *tok = strtok(p, " ");
    while (tok) {
        if (field == 14) ut = strtoul(tok, NULL, 10);
        if (field == 15) {
            st = strtoul(tok, NULL, 10);
            break;
        }
        field++;
        tok = strtok(NULL, " ");
    }
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Busy CPU time of the whole machine (all cores), and steal, in seconds. */
static int sys_cpu_s(double *busy, double *steal) {
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    unsigned long long v[10] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
                   &v[5], &v[6], &v[7], &v[8], &v[9]);
    fclose(f);
    if (n < 8) return -1;
    double tck = (double)sysconf(_SC_CLK_TCK);
    /* user nice system idle iowait irq softirq steal (guest is included in user) */
    *busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6]) / tck;
    *steal = (double)v[7] / tck;
    return 0;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_us(double q) {
    if (!nsamples) return -1;
    size_t i = (size_t)(q * (double)(nsamples - 1) + 0.5);
    if (i >= nsamples) i = nsamples - 1;
    return samples[i] / 1000.0;
}

static void usage(void) {
    fprintf(stderr,
            "usage: wsload MODE --port P [options]\n"
            "  MODE: echo | churn | idle | http\n"
            "  --host H (127.0.0.1)  --path /P (/)  --conns N (1; churn: parallel lives)\n"
            "  --warmup S (2)  --duration S (5)  --size BYTES (32)  --binary\n"
            "  --ramp K (50: max handshakes in flight while connecting)\n"
            "  --connect-timeout S (60)  --hold S (60, idle)  --cycle-timeout S (5, churn)\n"
            "  --pid PID (server pid, to report its CPU use in the measured window)\n"
            "  --close (http: send Connection: close, one request per connection)\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 2) usage();
    const char *m = argv[1];
    if (!strcmp(m, "echo")) mode = M_ECHO;
    else if (!strcmp(m, "churn")) mode = M_CHURN;
    else if (!strcmp(m, "idle")) mode = M_IDLE;
    else if (!strcmp(m, "http")) mode = M_HTTP;
    else usage();

    static struct option opts[] = {
        {"host", 1, 0, 'h'}, {"port", 1, 0, 'p'}, {"path", 1, 0, 'P'}, {"conns", 1, 0, 'c'},
        {"warmup", 1, 0, 'w'}, {"duration", 1, 0, 'd'}, {"size", 1, 0, 's'}, {"binary", 0, 0, 'b'},
        {"ramp", 1, 0, 'r'}, {"connect-timeout", 1, 0, 'T'}, {"hold", 1, 0, 'H'},
        {"cycle-timeout", 1, 0, 'C'}, {"pid", 1, 0, 'i'}, {"close", 0, 0, 'k'}, {0, 0, 0, 0}};
    int o;
    optind = 2;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'h': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'P': path = optarg; break;
        case 'c': nconns = atoi(optarg); break;
        case 'w': warmup_s = atof(optarg); break;
        case 'd': duration_s = atof(optarg); break;
        case 's': msg_size = strtoul(optarg, NULL, 10); break;
        case 'b': binary = 1; break;
        case 'r': ramp = atoi(optarg); break;
        case 'T': connect_timeout_s = atof(optarg); break;
        case 'H': hold_s = atof(optarg); break;
        case 'C': cycle_timeout_s = atof(optarg); break;
        case 'i': server_pid = atoi(optarg); break;
        case 'k': http_close = 1; break;
        default: usage();
        }
    }
    if (port <= 0 || nconns <= 0 || ramp <= 0 || duration_s <= 0 || warmup_s < 0) usage();

    signal(SIGPIPE, SIG_IGN);
    /* Hard bound on the whole run, whatever happens. */
    double total = connect_timeout_s + warmup_s + duration_s + (mode == M_IDLE ? hold_s : 0) + 30;
    alarm((unsigned)total);

    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rlim_t want = (rlim_t)nconns + 64;
    if (rl.rlim_cur < want) {
        if (rl.rlim_max < want) {
            rl.rlim_max = want;
        }
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
            getrlimit(RLIMIT_NOFILE, &rl);
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
    }

    rng_state ^= (uint64_t)now_ns() * 2654435761u;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) die("--host must be an IPv4 address");

    /* request frame */
    unsigned char *payload = malloc(msg_size + 1);
    for (size_t i = 0; i < msg_size; i++)
        payload[i] = binary ? (unsigned char)rng() : (unsigned char)("0123456789abcdef"[i & 15]);
    req_frame = malloc(msg_size + 14);
    req_frame_len = build_frame(req_frame, binary ? 0x2 : 0x1, payload, msg_size);
    free(payload);

    hs_req = malloc(strlen(path) + strlen(host) + 512);
    hs_req_len = (size_t)sprintf(hs_req,
                                 "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                                 path, host, port);
    http_req = malloc(strlen(path) + strlen(host) + 256);
    http_req_len = (size_t)sprintf(http_req, "GET %s HTTP/1.1\r\nHost: %s:%d\r\n%s\r\n", path, host, port,
                                   http_close ? "Connection: close\r\n" : "");

    conns = calloc((size_t)nconns, sizeof *conns);
    for (int i = 0; i < nconns; i++) {
        conns[i].fd = -1;
        conns[i].rcap = mode == M_IDLE ? 512 : 65536;
        conns[i].rbuf = malloc(conns[i].rcap);
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");

    t_begin = now_ns();
    uint64_t connect_deadline = t_begin + (uint64_t)(connect_timeout_s * 1e9);
    double cpu0 = 0, scpu0 = 0, busy0 = 0, steal0 = 0;
    int next_idx = 0;

    if (mode == M_CHURN) {
        for (int i = 0; i < nconns; i++) start_conn(i);
        phase = P_WARMUP;
        t_phase_end = now_ns() + (uint64_t)(warmup_s * 1e9);
    }

    struct epoll_event evs[512];
    uint64_t last_scan = now_ns();
    int stdin_registered = 0;
    while (phase != P_DONE) {
        uint64_t t = now_ns();
        /* connection ramp */
        if (phase == P_CONNECT) {
            while (next_idx < nconns && n_pending < ramp) start_conn(next_idx++);
            int resolved = 0;
            if (mode == M_IDLE) {
                /* all started, and each either replied or is gone (checked every 20 ms) */
                if (next_idx == nconns && t - last_scan > 20000000ull) {
                    last_scan = t;
                    long dead = 0;
                    for (int i = 0; i < next_idx; i++)
                        if (conns[i].state == S_FREE) dead++;
                    resolved = n_replied_idle + dead >= nconns;
                }
            } else {
                resolved = next_idx == nconns && n_pending == 0;
            }
            if (resolved || t >= connect_deadline) {
                if (mode == M_IDLE) {
                    phase = P_HOLD;
                    printf("READY ok=%ld failed=%ld\n", n_replied_idle, (long)nconns - n_replied_idle);
                    fflush(stdout);
                    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = STDIN_TAG};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev) == 0) stdin_registered = 1;
                    t_phase_end = t + (uint64_t)(hold_s * 1e9);
                } else {
                    phase = P_WARMUP;
                    t_phase_end = t + (uint64_t)(warmup_s * 1e9);
                    for (int i = 0; i < nconns; i++)
                        if (conns[i].state == S_OPEN) send_request(&conns[i], i);
                }
            }
        }
        if ((phase == P_WARMUP || phase == P_MEASURE || phase == P_HOLD) && t >= t_phase_end) {
            if (phase == P_WARMUP) {
                phase = P_MEASURE;
                t_meas_start = t;
                cpu0 = self_cpu_s();
                scpu0 = proc_cpu_s(server_pid);
                sys_cpu_s(&busy0, &steal0);
                t_phase_end = t + (uint64_t)(duration_s * 1e9);
            } else if (phase == P_MEASURE) {
                t_meas_end = t;
                phase = P_DONE;
                break;
            } else {
                phase = P_DONE;
                break;
            }
        }
        /* churn: abandon lives stuck longer than the cycle timeout */
        if (mode == M_CHURN && t - last_scan > 100000000ull) {
            last_scan = t;
            for (int i = 0; i < nconns; i++) {
                if (conns[i].state != S_FREE && t - conns[i].t_start > (uint64_t)(cycle_timeout_s * 1e9)) {
                    n_timeouts++;
                    conn_failed(&conns[i], i, "churn cycle timed out", 0);
                } else if (conns[i].state == S_FREE && phase < P_DONE) {
                    start_conn(i); /* e.g. after a socket() failure */
                }
            }
        }
        int timeout_ms = 100;
        if (phase == P_WARMUP || phase == P_MEASURE || phase == P_HOLD) {
            uint64_t left = t_phase_end > t ? t_phase_end - t : 0;
            int lm = (int)(left / 1000000ull) + 1;
            if (lm < timeout_ms) timeout_ms = lm;
        }
        int n = epoll_wait(ep, evs, 512, timeout_ms);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u64 == STDIN_TAG) {
                char b[256];
                ssize_t r = read(0, b, sizeof b);
                (void)r;
                phase = P_DONE;
                continue;
            }
            int idx = (int)(uint32_t)evs[i].data.u64;
            uint32_t gen = (uint32_t)(evs[i].data.u64 >> 32);
            if (idx < 0 || idx >= nconns || conns[idx].gen != gen || conns[idx].state == S_FREE) continue;
            handle_event(evs[i].events, idx);
        }
    }
    (void)stdin_registered;

    double elapsed = t_meas_end > t_meas_start ? (t_meas_end - t_meas_start) / 1e9 : 0;
    double gen_cpu = elapsed > 0 ? (self_cpu_s() - cpu0) / elapsed : -1;
    double scpu1 = proc_cpu_s(server_pid);
    double srv_cpu = (elapsed > 0 && scpu0 >= 0 && scpu1 >= 0) ? (scpu1 - scpu0) / elapsed : -1;
    long still_open = n_open;
    double busy1 = 0, steal1 = 0;
    sys_cpu_s(&busy1, &steal1);
    double sys_busy = elapsed > 0 ? (busy1 - busy0) / elapsed : -1;
    double sys_steal = elapsed > 0 ? (steal1 - steal0) / elapsed : -1;

    /* close everything */
    for (int i = 0; i < nconns; i++)
        if (conns[i].fd >= 0) close(conns[i].fd);

    qsort(samples, nsamples, sizeof *samples, cmp_u64);
    const char *mname = mode == M_ECHO ? "echo" : mode == M_CHURN ? "churn" : mode == M_IDLE ? "idle" : "http";
    printf("{\"mode\":\"%s\",\"conns\":%d,", mname, nconns);
    if (mode == M_IDLE) {
        printf("\"replied\":%ld,\"open_at_end\":%ld,\"dropped_during_hold\":%ld,", n_replied_idle, still_open,
               n_dropped_during_hold);
    } else {
        double rate = elapsed > 0 ? n_msgs / elapsed : 0;
        printf("\"size\":%zu,\"binary\":%d,\"measured_s\":%.3f,\"count\":%ld,\"rate\":%.1f,", msg_size, binary,
               elapsed, n_msgs, rate);
        printf("\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f,", pct_us(0.50), pct_us(0.90),
               pct_us(0.99), pct_us(1.0));
        printf("\"gen_cpu\":%.3f,\"server_cpu\":%.3f,\"machine_busy_cores\":%.3f,\"steal_cores\":%.3f,"
               "\"open_at_end\":%ld,",
               gen_cpu, srv_cpu, sys_busy, sys_steal, still_open);
    }
    printf("\"connect_failed\":%ld,\"errors\":%ld,\"server_closed\":%ld,\"unsolicited\":%ld,\"timeouts\":%ld,"
           "\"reconnects\":%ld,\"non2xx\":%ld,\"first_error\":\"",
           n_failed, n_errors, n_server_closed, n_unsolicited, n_timeouts, n_reconnects, n_non2xx);
    for (const char *q = first_error; *q; q++) {
        if (*q == '"' || *q == '\\') putchar('\\');
        putchar(isprint((unsigned char)*q) ? *q : '?');
    }
    printf("\"}\n");
    return 0;
}
