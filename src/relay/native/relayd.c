/*
 * sc2c-relayd: the TURN relay's native data plane (issue 23). The TURN server in Node keeps the
 * whole control plane (authentication, allocations, permissions, channel bindings, quotas, expiry);
 * this process owns its UDP sockets and forwards ChannelData of bound channels between a client
 * and its peer with recvmmsg/sendmmsg, a batch of datagrams per system call (and runs of
 * equal-sized ones as one UDP GSO send), which Node's dgram (one JavaScript callback and one send
 * per datagram) cannot do. Every datagram it does not forward goes up to Node as it came.
 *
 * Started by src/relay/native-plane.ts with stdin and stdout as the control channel; it exits when
 * stdin closes, so it never outlives the server. Frames both ways: u32 body length, u8 type, body,
 * big-endian. Node -> relayd:
 *   1 BIND    u32 sock, u32 ip, u16 port, u32 rcvbuf
 *   2 SEND    u32 sock, u32 ip, u16 port, u8 ttl (0: the socket's), datagram
 *   3 CLOSE   u32 sock
 *   4 TTL     u32 sock, u8 ttl
 *   5 ROUTE   u32 route, u32 listener sock, u32 client ip, u16 client port, u16 channel,
 *             u32 relay sock, u32 peer ip, u16 peer port
 *   6 UNROUTE u32 route
 *   7 STATS   u32 request
 * relayd -> Node:
 *   101 BOUND  u32 sock, u16 port, i32 errno (0: bound)
 *   102 RECV   u32 sock, u32 ip, u16 port, datagram
 *   103 COUNTS u32 request, u64 dropped up, u64 send failures, u64 GSO sends, u32 n,
 *              n x (u32 route, u64 packets to peer, u64 bytes to peer, u64 packets to client,
 *              u64 bytes to client)
 *   104 GONE   u32 route, the same four u64 counters (final; all 0 for a route refused)
 * A route's peer gets a socket of its own, connected to it (see Conn), so that its datagrams and
 * those to it need no route look-up. An ICMP error from a peer fails the next send to it (counted
 * as a send failure), where an unconnected socket would have sent it into the void.
 * Ids are Node's: the low 16 bits index a slot here, the rest is a generation, so a late frame of a
 * closed socket or route is never taken for its slot's next occupant. A malformed control frame is
 * a bug in the server, not input from the network: relayd exits (status 3) rather than guess.
 *
 * Build: cc -O2 -o sc2c-relayd relayd.c (native-plane.ts does it on first use).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define SLOTS 65536
#define BUCKETS (1 << 17)
#define BATCH 32
#define MAX_DATAGRAM 65536
#define MAX_FRAME (MAX_DATAGRAM + 64)
#define OUT_SOFT (4u << 20) /* datagrams going up are dropped beyond this */
#define OUT_HARD (16u << 20) /* a Node that reads nothing for this long is gone */
#define IN_CAP (1u << 20)
#define STDIN_TAG 0xFFFFFFFFu
#define STDOUT_TAG 0xFFFFFFFEu

enum { BIND = 1, SEND, CLOSE, TTL, ROUTE, UNROUTE, STATS };
enum { BOUND = 101, RECV, COUNTS, GONE };

typedef struct {
  uint32_t id; /* 0: free */
  int fd;
} Sock;

typedef struct {
  uint32_t id; /* 0: free */
  uint16_t lsock, rsock, cport, pport, channel;
  uint32_t cip, pip;
  uint64_t count[4]; /* packets to peer, bytes to peer, packets to client, bytes to client */
  int32_t next_c, next_p;
  int32_t pconn; /* the connected socket to the peer; -1: none */
} Route;

/*
 * A connected socket for a route's peer, bound to the relayed socket's address and port with
 * SO_REUSEPORT. The kernel gives the peer's datagrams to it (a reuseport group with a connected
 * member is searched by score, and the connected member matches best), finds it by the early
 * demux, which skips the route look-up on receive, and sends on it without a route look-up either.
 * What it receives counts as received on `owner`.
 *
 * Only peers get one, and not clients as coturn does: every client shares the listening port, and
 * the kernel keeps all sockets of one local address and port in one hash slot, so each datagram
 * to the listener from anyone without a connected socket (a STUN request, a stranger's junk) would
 * walk every client's socket. A relayed port has one peer route or a few.
 */
typedef struct {
  uint32_t refs; /* 0: free */
  int fd;
  uint16_t owner;
  uint16_t port;
  uint32_t ip;
  int32_t next; /* hash chain; the free list when free */
} Conn;

#define CONNS SLOTS /* one per route at most */
#define CONN_TAG 0x40000000u

static Sock socks[SLOTS];
static Route routes[SLOTS];
static Conn conns[CONNS];
static int32_t by_conn[BUCKETS], conn_free;
static int32_t by_client[BUCKETS], by_peer[BUCKETS];
static uint32_t route_high; /* one past the highest slot ever used */
static int max_datagram = 2048;
static int epfd;
static uint64_t dropped_up, send_failed, gso_sends;

static uint8_t *in_buf;
static size_t in_len;
static uint8_t *out_buf;
static size_t out_len;
static int out_waiting;

static uint8_t rx[BATCH][MAX_DATAGRAM];
static struct mmsghdr rx_msgs[BATCH];
static struct iovec rx_iov[BATCH];
static struct sockaddr_in rx_from[BATCH];

static struct mmsghdr tx_msgs[BATCH];
static struct iovec tx_iov[BATCH][2];
static struct sockaddr_in tx_to[BATCH];
static uint8_t tx_head[BATCH][4];
static int tx_n, tx_fd = -1;
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
/*
 * Runs of equal-sized datagrams to one destination go down as one UDP GSO send (UDP_SEGMENT,
 * Linux 4.18+): the stack is walked once for the run and the datagrams are cut at the device, or
 * by the receiving host's stack. A video frame's fragments are mostly of one size, so under load a
 * batch holds such runs. A device that cannot (no checksum offload: EIO) turns it off for good.
 */
static int gso_off;
static struct mmsghdr gso_msgs[BATCH];
static int gso_first[BATCH]; /* the tx entry each GSO send starts with */
static struct iovec gso_iov[BATCH * 2];
static union {
  char buf[CMSG_SPACE(sizeof(uint16_t))];
  struct cmsghdr align;
} gso_control[BATCH];

static void die(const char *why) {
  fprintf(stderr, "sc2c-relayd: %s\n", why);
  exit(3);
}

static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static void wr32(uint8_t *p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }
static void wr16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v; }
static void wr64(uint8_t *p, uint64_t v) { wr32(p, (uint32_t)(v >> 32)); wr32(p + 4, (uint32_t)v); }

static uint32_t mix(uint32_t a, uint32_t b, uint32_t c) {
  uint64_t h = ((uint64_t)a * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)b * 0xC2B2AE3D27D4EB4Full) ^ ((uint64_t)c * 0x165667B19E3779F9ull);
  h ^= h >> 29;
  return (uint32_t)h & (BUCKETS - 1);
}
static uint32_t hash_client(uint16_t lsock, uint32_t ip, uint16_t port, uint16_t channel) {
  return mix(lsock, ip, (uint32_t)port << 16 | channel);
}
static uint32_t hash_peer(uint16_t rsock, uint32_t ip, uint16_t port) { return mix(rsock | 0x10000u, ip, port); }

/* Room for a frame of `body` bytes going up; NULL when a datagram must be dropped instead. */
static uint8_t *frame(uint8_t type, size_t body, int control) {
  size_t need = out_len + 5 + body;
  if (need > (control ? OUT_HARD : OUT_SOFT)) {
    if (control) die("the server has not read its control channel: giving up");
    dropped_up++;
    return NULL;
  }
  uint8_t *p = out_buf + out_len;
  wr32(p, (uint32_t)body + 1);
  p[4] = type;
  out_len = need;
  return p + 5;
}

static void flush_out(void) {
  size_t done = 0;
  while (done < out_len) {
    ssize_t n = write(1, out_buf + done, out_len - done);
    if (n > 0) done += (size_t)n;
    else if (n < 0 && errno == EINTR) continue;
    else if (n < 0 && errno == EAGAIN) break;
    else exit(0); /* the server is gone */
  }
  memmove(out_buf, out_buf + done, out_len - done);
  out_len -= done;
  int want = out_len > 0;
  if (want != out_waiting) {
    struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = STDOUT_TAG};
    epoll_ctl(epfd, want ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, 1, &ev);
    out_waiting = want;
  }
}

/*
 * Sends msgs[0, count); returns count, or the index of a GSO send the kernel refused. `first`
 * (GSO sends) gives the datagrams each send carries, so a lost send counts all of them.
 */
static int send_all(struct mmsghdr *msgs, int count, const int *first, int total) {
  int sent = 0;
  while (sent < count) {
    int n = sendmmsg(tx_fd, msgs + sent, (unsigned)(count - sent), 0);
    if (n > 0) sent += n;
    else if (n < 0 && errno == EINTR) continue;
    else if ((errno == EIO || errno == EINVAL) && msgs[sent].msg_hdr.msg_controllen > 0) return sent;
    else {
      /* a full buffer, no route: this one is lost; go on with the rest */
      send_failed += first ? (uint64_t)((sent + 1 < count ? first[sent + 1] : total) - first[sent]) : 1;
      sent++;
    }
  }
  return count;
}

static size_t entry_len(int i) {
  size_t len = 0;
  for (size_t k = 0; k < tx_msgs[i].msg_hdr.msg_iovlen; k++) len += tx_iov[i][k].iov_len;
  return len;
}

static int same_run(int a, int b, size_t len) {
  return tx_to[a].sin_addr.s_addr == tx_to[b].sin_addr.s_addr && tx_to[a].sin_port == tx_to[b].sin_port &&
         entry_len(b) == len;
}

static void flush_tx(void) {
  if (!gso_off) {
    int m = 0, v = 0;
    for (int i = 0; i < tx_n;) {
      size_t len = entry_len(i);
      int j = i + 1;
      while (j < tx_n && same_run(i, j, len)) j++;
      gso_first[m] = i;
      struct msghdr *h = &gso_msgs[m].msg_hdr;
      *h = (struct msghdr){.msg_name = tx_msgs[i].msg_hdr.msg_name,
                           .msg_namelen = tx_msgs[i].msg_hdr.msg_namelen,
                           .msg_iov = &gso_iov[v]};
      for (int k = i; k < j; k++)
        for (size_t p = 0; p < tx_msgs[k].msg_hdr.msg_iovlen; p++) gso_iov[v++] = tx_iov[k][p];
      h->msg_iovlen = (size_t)(v - (h->msg_iov - gso_iov));
      if (j - i > 1) {
        gso_sends++;
        uint16_t segment = (uint16_t)len;
        h->msg_control = gso_control[m].buf;
        h->msg_controllen = sizeof gso_control[m].buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(h);
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof segment);
        memcpy(CMSG_DATA(c), &segment, sizeof segment);
      }
      m++;
      i = j;
    }
    int done = send_all(gso_msgs, m, gso_first, tx_n);
    if (done == m) {
      tx_n = 0;
      return;
    }
    gso_off = 1;
    fprintf(stderr, "sc2c-relayd: UDP GSO refused (%s): sending datagram by datagram\n", strerror(errno));
    /* What went before the refused send has left; the rest goes one by one. */
    send_all(tx_msgs + gso_first[done], tx_n - gso_first[done], NULL, 0);
    tx_n = 0;
    return;
  }
  send_all(tx_msgs, tx_n, NULL, 0);
  tx_n = 0;
}

/* `connected`: fd is connected to ip:port, and the send names no address (no route look-up). */
static void queue_tx(int fd, int connected, const uint8_t *head, const uint8_t *data, size_t len, uint32_t ip, uint16_t port) {
  if (fd != tx_fd || tx_n == BATCH) {
    if (tx_n > 0) flush_tx();
    tx_fd = fd;
  }
  int i = tx_n++;
  tx_to[i] = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(ip)};
  int parts = 0;
  if (head) {
    memcpy(tx_head[i], head, 4);
    tx_iov[i][parts++] = (struct iovec){tx_head[i], 4};
  }
  tx_iov[i][parts++] = (struct iovec){(void *)data, len};
  tx_msgs[i].msg_hdr = (struct msghdr){.msg_name = connected ? NULL : &tx_to[i],
                                       .msg_namelen = connected ? 0 : sizeof tx_to[i],
                                       .msg_iov = tx_iov[i],
                                       .msg_iovlen = (size_t)parts};
}

static Route *find_client(uint16_t lsock, uint32_t ip, uint16_t port, uint16_t channel) {
  for (int32_t r = by_client[hash_client(lsock, ip, port, channel)]; r >= 0; r = routes[r].next_c) {
    Route *x = &routes[r];
    if (x->lsock == lsock && x->cip == ip && x->cport == port && x->channel == channel) return x;
  }
  return NULL;
}

static Route *find_peer(uint16_t rsock, uint32_t ip, uint16_t port) {
  for (int32_t r = by_peer[hash_peer(rsock, ip, port)]; r >= 0; r = routes[r].next_p) {
    Route *x = &routes[r];
    if (x->rsock == rsock && x->pip == ip && x->pport == port) return x;
  }
  return NULL;
}

/* One datagram in from socket slot `s`: forwarded when a route takes it, else sent up to Node. */
static void datagram(uint16_t s, const uint8_t *data, size_t len, int truncated, const struct sockaddr_in *from) {
  uint32_t ip = ntohl(from->sin_addr.s_addr);
  uint16_t port = ntohs(from->sin_port);
  if (!truncated && len <= (size_t)max_datagram) {
    if (len >= 4 && data[0] >= 0x40 && data[0] <= 0x7f) {
      size_t length = rd16(data + 2);
      /* RFC 8656 §12.4: the length field, then at most 3 bytes of padding. */
      if (4 + length <= len && len - 4 - length <= 3) {
        Route *r = find_client(s, ip, port, rd16(data));
        if (r) {
          int c = r->pconn;
          queue_tx(c >= 0 ? conns[c].fd : socks[r->rsock].fd, c >= 0, NULL, data + 4, length, r->pip, r->pport);
          r->count[0]++;
          r->count[1] += length;
          return;
        }
      }
    }
    Route *r = find_peer(s, ip, port);
    if (r && len <= 0xFFFF) {
      uint8_t head[4];
      wr16(head, r->channel);
      wr16(head + 2, (uint16_t)len);
      queue_tx(socks[r->lsock].fd, 0, head, data, len, r->cip, r->cport);
      r->count[2]++;
      r->count[3] += len;
      return;
    }
  }
  /* A truncated datagram goes up as the 64 KiB read: Node counts it as oversized. */
  uint8_t *p = frame(RECV, 10 + len, 0);
  if (!p) return;
  wr32(p, socks[s].id);
  wr32(p + 4, ip);
  wr16(p + 8, port);
  memcpy(p + 10, data, len);
}

/* Reads what `fd` holds (a socket's, or a connected one's of socket `s`) as received on `s`. */
static void drain(int fd, uint16_t s) {
  for (int round = 0; round < 8; round++) { /* then the other sockets get their turn */
    int n = recvmmsg(fd, rx_msgs, BATCH, MSG_DONTWAIT, NULL);
    if (n <= 0) break;
    for (int i = 0; i < n; i++) {
      datagram(s, rx[i], rx_msgs[i].msg_len, (rx_msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0, &rx_from[i]);
      rx_msgs[i].msg_hdr.msg_namelen = sizeof rx_from[i];
      rx_msgs[i].msg_hdr.msg_flags = 0;
    }
    if (tx_n > 0) flush_tx();
    if (n < BATCH) break;
  }
}

static uint16_t slot(uint32_t id) { return (uint16_t)(id & 0xFFFF); }

static uint32_t hash_conn(uint16_t owner, uint32_t ip, uint16_t port) { return mix(owner | 0x20000u, ip, port); }

/*
 * The connected socket of socket slot `owner` to ip:port, shared by the routes that use it (a
 * peer has one route per relayed socket; the sharing is for safety); made on first use. -1 when it cannot be made (the route then uses `owner` itself, as before).
 */
static int32_t conn_get(uint16_t owner, uint32_t ip, uint16_t port) {
  uint32_t h = hash_conn(owner, ip, port);
  for (int32_t c = by_conn[h]; c >= 0; c = conns[c].next)
    if (conns[c].owner == owner && conns[c].ip == ip && conns[c].port == port) {
      conns[c].refs++;
      return c;
    }
  int32_t c = conn_free;
  if (c < 0) return -1;
  int one = 1, base = socks[owner].fd, rcvbuf = 0, ttl = 0;
  socklen_t size = sizeof rcvbuf;
  struct sockaddr_in local, remote = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(ip)};
  socklen_t llen = sizeof local;
  /* The owner joins the reuseport group now; relayd's other sockets never set it before their
   * bind, so no later bind to port 0 can be given a port already in use. */
  if (setsockopt(base, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
      getsockname(base, (struct sockaddr *)&local, &llen) != 0)
    return -1;
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (getsockopt(base, SOL_SOCKET, SO_RCVBUF, &rcvbuf, &size) == 0) {
    rcvbuf /= 2; /* Linux reports twice what was asked */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  }
  size = sizeof ttl;
  if (getsockopt(base, IPPROTO_IP, IP_TTL, &ttl, &size) == 0) setsockopt(fd, IPPROTO_IP, IP_TTL, &ttl, sizeof ttl);
  struct epoll_event ev = {.events = EPOLLIN, .data.u32 = CONN_TAG | (uint32_t)c};
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
      bind(fd, (struct sockaddr *)&local, sizeof local) != 0 ||
      connect(fd, (struct sockaddr *)&remote, sizeof remote) != 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
    close(fd);
    return -1;
  }
  conn_free = conns[c].next;
  conns[c] = (Conn){.refs = 1, .fd = fd, .owner = owner, .ip = ip, .port = port, .next = by_conn[h]};
  by_conn[h] = c;
  return c;
}

static void conn_put(int32_t c) {
  if (c < 0 || --conns[c].refs > 0) return;
  int32_t *at = &by_conn[hash_conn(conns[c].owner, conns[c].ip, conns[c].port)];
  while (*at >= 0 && *at != c) at = &conns[*at].next;
  if (*at == c) *at = conns[c].next;
  /* What it still holds is read as the owner's (a client's request in flight goes up, not away). */
  drain(conns[c].fd, conns[c].owner);
  epoll_ctl(epfd, EPOLL_CTL_DEL, conns[c].fd, NULL);
  close(conns[c].fd);
  conns[c] = (Conn){.fd = -1, .next = conn_free};
  conn_free = c;
}


static Sock *sock_of(uint32_t id) {
  Sock *x = &socks[slot(id)];
  return id != 0 && x->id == id ? x : NULL;
}

static void gone(Route *r) {
  uint8_t *p = frame(GONE, 4 + 32, 1);
  wr32(p, r->id);
  for (int k = 0; k < 4; k++) wr64(p + 4 + 8 * k, r->count[k]);
}

static void unlink_route(int32_t index) {
  Route *r = &routes[index];
  int32_t *at = &by_client[hash_client(r->lsock, r->cip, r->cport, r->channel)];
  while (*at >= 0 && *at != index) at = &routes[*at].next_c;
  if (*at == index) *at = r->next_c;
  at = &by_peer[hash_peer(r->rsock, r->pip, r->pport)];
  while (*at >= 0 && *at != index) at = &routes[*at].next_p;
  if (*at == index) *at = r->next_p;
  gone(r);
  int32_t pconn = r->pconn;
  memset(r, 0, sizeof *r);
  conn_put(pconn);
}

static void on_bind(const uint8_t *b) {
  uint32_t id = rd32(b), ip = rd32(b + 4);
  uint16_t port = rd16(b + 8);
  int rcvbuf = (int)rd32(b + 10);
  if (id == 0 || socks[slot(id)].id != 0) die("BIND of a slot in use");
  int err = 0, fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(ip)};
  socklen_t alen = sizeof a;
  if (fd < 0) err = errno;
  else {
    if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = slot(id)};
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(fd, (struct sockaddr *)&a, &alen) != 0 ||
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
      err = errno;
      close(fd);
    }
  }
  if (err == 0) socks[slot(id)] = (Sock){.id = id, .fd = fd};
  uint8_t *p = frame(BOUND, 10, 1);
  wr32(p, id);
  wr16(p + 4, err ? 0 : ntohs(a.sin_port));
  wr32(p + 6, (uint32_t)err);
}

static void on_send(const uint8_t *b, size_t len) {
  Sock *x = sock_of(rd32(b));
  if (!x) return; /* closed meanwhile */
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(rd16(b + 8)), .sin_addr.s_addr = htonl(rd32(b + 4))};
  struct iovec iov = {(void *)(b + 11), len - 11};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } control;
  struct msghdr m = {.msg_name = &to, .msg_namelen = sizeof to, .msg_iov = &iov, .msg_iovlen = 1};
  if (b[10] != 0) {
    int ttl = b[10];
    m.msg_control = control.buf;
    m.msg_controllen = sizeof control.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = IPPROTO_IP;
    c->cmsg_type = IP_TTL;
    c->cmsg_len = CMSG_LEN(sizeof ttl);
    memcpy(CMSG_DATA(c), &ttl, sizeof ttl);
  }
  if (sendmsg(x->fd, &m, 0) < 0) send_failed++;
}

static void on_close(uint32_t id) {
  Sock *x = sock_of(id);
  if (!x) die("CLOSE of a socket not open");
  uint16_t s = slot(id);
  for (uint32_t r = 0; r < route_high; r++)
    if (routes[r].id != 0 && (routes[r].lsock == s || routes[r].rsock == s)) unlink_route((int32_t)r);
  epoll_ctl(epfd, EPOLL_CTL_DEL, x->fd, NULL);
  close(x->fd);
  x->id = 0;
  x->fd = -1;
}

static void on_route(const uint8_t *b) {
  uint32_t id = rd32(b);
  Route n = {.id = id,
             .lsock = slot(rd32(b + 4)),
             .cip = rd32(b + 8),
             .cport = rd16(b + 12),
             .channel = rd16(b + 14),
             .rsock = slot(rd32(b + 16)),
             .pip = rd32(b + 20),
             .pport = rd16(b + 24)};
  int32_t index = slot(id);
  if (id == 0 || routes[index].id != 0) die("ROUTE of a slot in use");
  /* A route whose sockets are gone, or whose client or peer side is taken, is refused at once. */
  if (!sock_of(rd32(b + 4)) || !sock_of(rd32(b + 16)) || find_client(n.lsock, n.cip, n.cport, n.channel) ||
      find_peer(n.rsock, n.pip, n.pport)) {
    gone(&n);
    return;
  }
  n.pconn = conn_get(n.rsock, n.pip, n.pport);
  uint32_t hc = hash_client(n.lsock, n.cip, n.cport, n.channel), hp = hash_peer(n.rsock, n.pip, n.pport);
  n.next_c = by_client[hc];
  n.next_p = by_peer[hp];
  routes[index] = n;
  by_client[hc] = index;
  by_peer[hp] = index;
  if ((uint32_t)index + 1 > route_high) route_high = (uint32_t)index + 1;
}

static void on_stats(uint32_t request) {
  uint32_t n = 0;
  for (uint32_t r = 0; r < route_high; r++) n += routes[r].id != 0;
  uint8_t *p = frame(COUNTS, 32 + (size_t)n * 36, 1);
  wr32(p, request);
  wr64(p + 4, dropped_up);
  wr64(p + 12, send_failed);
  wr64(p + 20, gso_sends);
  wr32(p + 28, n);
  p += 32;
  for (uint32_t r = 0; r < route_high; r++) {
    if (routes[r].id == 0) continue;
    wr32(p, routes[r].id);
    for (int k = 0; k < 4; k++) wr64(p + 4 + 8 * k, routes[r].count[k]);
    p += 36;
  }
}

static void control(uint8_t type, const uint8_t *b, size_t len) {
  static const size_t need[] = {0, 14, 11, 4, 5, 26, 4, 4};
  if (type < BIND || type > STATS || len < need[type] || (type != SEND && len != need[type])) die("malformed control frame");
  switch (type) {
  case BIND: on_bind(b); break;
  case SEND: on_send(b, len); break;
  case CLOSE: on_close(rd32(b)); break;
  case TTL: {
    Sock *x = sock_of(rd32(b));
    int ttl = b[4];
    if (x) setsockopt(x->fd, IPPROTO_IP, IP_TTL, &ttl, sizeof ttl);
    for (int32_t c = 0; x && c < CONNS; c++)
      if (conns[c].refs > 0 && conns[c].owner == slot(rd32(b))) setsockopt(conns[c].fd, IPPROTO_IP, IP_TTL, &ttl, sizeof ttl);
    break;
  }
  case ROUTE: on_route(b); break;
  case UNROUTE: {
    uint32_t id = rd32(b);
    if (id != 0 && routes[slot(id)].id == id) unlink_route(slot(id));
    break; /* a route already gone with its socket: its GONE was sent then */
  }
  case STATS: on_stats(rd32(b)); break;
  }
}

static void read_control(void) {
  for (;;) {
    ssize_t n = read(0, in_buf + in_len, IN_CAP - in_len);
    if (n == 0) exit(0); /* the server closed the channel: stop */
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      exit(0);
    }
    in_len += (size_t)n;
    size_t at = 0;
    while (in_len - at >= 5) {
      uint32_t body = rd32(in_buf + at);
      if (body < 1 || body > MAX_FRAME) die("control frame length out of range");
      if (in_len - at < 4 + (size_t)body) break;
      control(in_buf[at + 4], in_buf + at + 5, body - 1);
      at += 4 + body;
    }
    memmove(in_buf, in_buf + at, in_len - at);
    in_len -= at;
  }
}

int main(int argc, char **argv) {
  if (argc >= 2) max_datagram = atoi(argv[1]);
  if (max_datagram < 64 || max_datagram > MAX_DATAGRAM) die("usage: sc2c-relayd [max-datagram-bytes]");
  signal(SIGPIPE, SIG_IGN);
  in_buf = malloc(IN_CAP);
  out_buf = malloc(OUT_HARD);
  if (!in_buf || !out_buf) die("out of memory");
  memset(by_client, 0xFF, sizeof by_client);
  memset(by_peer, 0xFF, sizeof by_peer);
  memset(by_conn, 0xFF, sizeof by_conn);
  for (int32_t c = 0; c < CONNS; c++) conns[c] = (Conn){.fd = -1, .next = c + 1 < CONNS ? c + 1 : -1};
  conn_free = 0;
  for (int i = 0; i < BATCH; i++) {
    rx_iov[i] = (struct iovec){rx[i], MAX_DATAGRAM};
    rx_msgs[i].msg_hdr = (struct msghdr){.msg_name = &rx_from[i], .msg_namelen = sizeof rx_from[i], .msg_iov = &rx_iov[i], .msg_iovlen = 1};
  }
  fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
  fcntl(1, F_SETFL, fcntl(1, F_GETFL) | O_NONBLOCK);
  epfd = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.u32 = STDIN_TAG};
  if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev) != 0) die("cannot poll the control channel");
  struct epoll_event events[64];
  for (;;) {
    int n = epoll_wait(epfd, events, 64, -1);
    if (n < 0 && errno != EINTR) die("epoll_wait failed");
    for (int i = 0; i < n; i++) {
      uint32_t tag = events[i].data.u32;
      if (tag == STDIN_TAG) read_control();
      else if (tag == STDOUT_TAG) flush_out();
      else if (tag & CONN_TAG) {
        Conn *c = &conns[tag & ~CONN_TAG];
        if (c->refs > 0) drain(c->fd, c->owner);
      } else if (socks[tag].id != 0) drain(socks[tag].fd, (uint16_t)tag);
    }
    if (out_len > 0) flush_out();
  }
}
