/*
 * wsecho: a minimal single-threaded epoll WebSocket echo server, used only to check the
 * ceiling of the load generator (bench/wsload.c): it does as little work per message as a
 * server can, so what wsload measures against it is (roughly) wsload's own limit.
 *
 *   wsecho PORT            listens on 127.0.0.1:PORT
 *
 * Any path upgrades to WebSocket (RFC 6455 handshake with a real Sec-WebSocket-Accept);
 * data frames are echoed frame by frame (unmasked, same opcode/FIN); ping -> pong; close ->
 * close reply, then the TCP connection is closed. A plain GET without Upgrade gets a small
 * keep-alive "200 ok" (for the HTTP ceiling).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
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
#include <unistd.h>

/* ---- SHA-1 (for Sec-WebSocket-Accept) ---- */
static uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }
static void sha1(const unsigned char *msg, size_t len, unsigned char out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t total = ((len + 8) / 64 + 1) * 64;
    unsigned char *m = calloc(total, 1);
    memcpy(m, msg, len);
    m[len] = 0x80;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) m[total - 1 - i] = (unsigned char)(bits >> (8 * i));
    for (size_t off = 0; off < total; off += 64) {
        uint32_t w[80];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)m[off + 4 * i] << 24 | (uint32_t)m[off + 4 * i + 1] << 16 |
                   (uint32_t)m[off + 4 * i + 2] << 8 | m[off + 4 * i + 3];
        for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f, k;
            if (i < 20) f = (b & c) | (~b & d), k = 0x5A827999;
            else if (i < 40) f = b ^ c ^ d, k = 0x6ED9EBA1;
            else if (i < 60) f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
            else f = b ^ c ^ d, k = 0xCA62C1D6;
            uint32_t t = rol(a, 5) + f + e + k + w[i];
            e = d, d = c, c = rol(b, 30), b = a, a = t;
        }
        h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
    }
    free(m);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++) out[4 * i + j] = (unsigned char)(h[i] >> (24 - 8 * j));
}

static void b64(const unsigned char *in, size_t n, char *out) {
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        out[o++] = t[v >> 18 & 63];
        out[o++] = t[v >> 12 & 63];
        out[o++] = i + 1 < n ? t[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? t[v & 63] : '=';
    }
    out[o] = 0;
}

typedef struct {
    int fd;
    int ws; /* upgraded */
    int closing;
    unsigned char *rbuf;
    size_t rlen, rcap;
    unsigned char *obuf;
    size_t olen, ooff, ocap;
    int want_out;
} client;

static int ep;

static void set_events(client *c) {
    struct epoll_event ev = {.events = EPOLLIN | (c->want_out ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void drop(client *c) {
    close(c->fd);
    free(c->rbuf);
    free(c->obuf);
    free(c);
}

/* queue/send; returns -1 if the socket is dead */
static int out(client *c, const void *d, size_t n) {
    const unsigned char *p = d;
    if (c->olen == c->ooff) {
        c->olen = c->ooff = 0;
        while (n) {
            ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
            if (w > 0) p += w, n -= (size_t)w;
            else if (w < 0 && errno == EINTR) continue;
            else if (w < 0 && errno == EAGAIN) break;
            else return -1;
        }
        if (!n) return 0;
    }
    if (c->olen + n > c->ocap) {
        c->ocap = (c->olen + n) * 2;
        c->obuf = realloc(c->obuf, c->ocap);
    }
    memcpy(c->obuf + c->olen, p, n);
    c->olen += n;
    if (!c->want_out) c->want_out = 1, set_events(c);
    return 0;
}

static size_t frame_header(unsigned char *h, int b0, uint64_t len) {
    size_t k = 0;
    h[k++] = (unsigned char)b0;
    if (len < 126) h[k++] = (unsigned char)len;
    else if (len < 65536) h[k++] = 126, h[k++] = (unsigned char)(len >> 8), h[k++] = (unsigned char)len;
    else {
        h[k++] = 127;
        for (int i = 7; i >= 0; i--) h[k++] = (unsigned char)(len >> (8 * i));
    }
    return k;
}

/* returns -1 to drop */
static int process(client *c) {
    size_t off = 0;
    for (;;) {
        unsigned char *b = c->rbuf + off;
        size_t avail = c->rlen - off;
        if (!c->ws) {
            unsigned char *end = memmem(b, avail, "\r\n\r\n", 4);
            if (!end) {
                if (avail > 16384) return -1;
                break;
            }
            size_t hl = (size_t)(end - b) + 4;
            char *key = NULL;
            size_t keylen = 0;
            int upgrade = 0;
            for (unsigned char *p = b; p < end;) {
                unsigned char *eol = memmem(p, (size_t)(end + 2 - p), "\r\n", 2);
                if (!eol) break;
                if (eol - p > 18 && !strncasecmp((char *)p, "Sec-WebSocket-Key:", 18)) {
                    key = (char *)p + 18;
                    while (*key == ' ') key++;
                    keylen = (size_t)((char *)eol - key);
                }
                if (eol - p > 8 && !strncasecmp((char *)p, "Upgrade:", 8)) upgrade = 1;
                p = eol + 2;
            }
            if (upgrade && key) {
                char buf[128];
                unsigned char dig[20];
                char acc[40];
                if (keylen > 64) return -1;
                memcpy(buf, key, keylen);
                memcpy(buf + keylen, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
                sha1((unsigned char *)buf, keylen + 36, dig);
                b64(dig, 20, acc);
                char resp[256];
                int n = snprintf(resp, sizeof resp,
                                 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                 "Sec-WebSocket-Accept: %s\r\n\r\n",
                                 acc);
                if (out(c, resp, (size_t)n) < 0) return -1;
                c->ws = 1;
            } else {
                static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";
                if (out(c, ok, sizeof ok - 1) < 0) return -1;
            }
            off += hl;
            continue;
        }
        if (avail < 2) break;
        int b0 = b[0], op = b0 & 15, masked = b[1] >> 7;
        uint64_t len = b[1] & 127;
        size_t h = 2;
        if (len == 126) {
            if (avail < 4) break;
            len = (uint64_t)b[2] << 8 | b[3], h = 4;
        } else if (len == 127) {
            if (avail < 10) break;
            len = 0;
            for (int i = 0; i < 8; i++) len = len << 8 | b[2 + i];
            h = 10;
        }
        if (len > (64u << 20)) return -1;
        unsigned char mk[4] = {0};
        if (masked) {
            if (avail < h + 4) break;
            memcpy(mk, b + h, 4);
            h += 4;
        }
        if (avail < h + len) {
            if (off + h + len > c->rcap) {
                memmove(c->rbuf, c->rbuf + off, avail);
                c->rlen = avail;
                off = 0;
                if (h + len > c->rcap) c->rcap = h + len + 4096, c->rbuf = realloc(c->rbuf, c->rcap);
            }
            break;
        }
        unsigned char *pl = b + h;
        if (masked)
            for (size_t i = 0; i < len; i++) pl[i] ^= mk[i & 3];
        off += h + len;
        unsigned char hdr[10];
        if (op == 0x8) {
            size_t k = frame_header(hdr, 0x88, len > 125 ? 2 : len);
            out(c, hdr, k);
            out(c, pl, len > 125 ? 2 : len);
            c->closing = 1;
            return -1;
        } else if (op == 0x9) {
            size_t k = frame_header(hdr, 0x8A, len);
            if (out(c, hdr, k) < 0 || out(c, pl, len) < 0) return -1;
        } else if (op <= 2) {
            /* echo in one send when nothing is queued: build header just in front of the payload */
            size_t k = frame_header(hdr, b0 & 0x8F, len);
            if (k <= h) {
                unsigned char *start = pl - k;
                memcpy(start, hdr, k);
                if (out(c, start, k + len) < 0) return -1;
            } else if (out(c, hdr, k) < 0 || out(c, pl, len) < 0) {
                return -1;
            }
        }
    }
    if (off) {
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: wsecho PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 4096) < 0) {
        perror("wsecho: bind/listen");
        return 1;
    }
    ep = epoll_create1(0);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &lev);
    struct epoll_event evs[512];
    for (;;) {
        int n = epoll_wait(ep, evs, 512, -1);
        for (int i = 0; i < n; i++) {
            client *c = evs[i].data.ptr;
            if (!c) {
                for (;;) {
                    int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
                    if (fd < 0) break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    client *nc = calloc(1, sizeof *nc);
                    nc->fd = fd;
                    nc->rcap = 4096;
                    nc->rbuf = malloc(nc->rcap);
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }
            if (evs[i].events & EPOLLOUT) {
                while (c->ooff < c->olen) {
                    ssize_t w = send(c->fd, c->obuf + c->ooff, c->olen - c->ooff, MSG_NOSIGNAL);
                    if (w > 0) c->ooff += (size_t)w;
                    else break;
                }
                if (c->ooff == c->olen) c->olen = c->ooff = 0, c->want_out = 0, set_events(c);
            }
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                if (c->rcap - c->rlen < 1024) c->rcap *= 2, c->rbuf = realloc(c->rbuf, c->rcap);
                ssize_t r = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                    drop(c);
                    continue;
                }
                if (r > 0) {
                    c->rlen += (size_t)r;
                    if (process(c) < 0) drop(c);
                }
            }
        }
    }
}
