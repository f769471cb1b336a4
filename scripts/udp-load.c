/*
 * udp-load: the relay benchmark's load generator and sink (scripts/bench-relay.ts compiles it with
 * cc -O2 at run time). Node's dgram costs a few microseconds a datagram, so a generator written in
 * it could not offer more than a relay forwards; this one batches with sendmmsg/recvmmsg.
 *
 *   udp-load gen <src-ip> <src-port> <dst-ip> <dst-port> <hex-prefix|-> <payload-bytes> <pps> <seconds>
 *     Sends <prefix><payload> datagrams at <pps> for <seconds>, paced from CLOCK_MONOTONIC in 1 ms
 *     slots, then prints {"sent":N} and exits.
 *   udp-load sink <ip> <port>
 *     Counts datagrams; prints {"port":P} once bound, then {"packets":N,"bytes":B} for every line
 *     read on stdin, and exits when stdin closes.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define MAX_DATAGRAM 2048

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int bind_udp(const char *ip, int port, int rcvbuf) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) { perror("socket"); exit(1); }
  if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) { fprintf(stderr, "bad address %s\n", ip); exit(2); }
  if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) { perror("bind"); exit(1); }
  return fd;
}

static int gen(int argc, char **argv) {
  if (argc != 10) { fprintf(stderr, "usage: udp-load gen src-ip src-port dst-ip dst-port hex|- bytes pps seconds\n"); return 2; }
  int fd = bind_udp(argv[2], atoi(argv[3]), 0);
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[5]))};
  if (inet_pton(AF_INET, argv[4], &to.sin_addr) != 1) { fprintf(stderr, "bad address %s\n", argv[4]); return 2; }
  static uint8_t datagram[MAX_DATAGRAM];
  size_t prefix = 0;
  if (strcmp(argv[6], "-") != 0) {
    size_t hex = strlen(argv[6]);
    if (hex % 2 != 0 || hex / 2 > 64) { fprintf(stderr, "bad prefix\n"); return 2; }
    for (size_t i = 0; i < hex / 2; i++) sscanf(argv[6] + 2 * i, "%2hhx", &datagram[i]);
    prefix = hex / 2;
  }
  long payload = atol(argv[7]);
  double pps = atof(argv[8]), seconds = atof(argv[9]);
  if (payload < 0 || prefix + (size_t)payload > MAX_DATAGRAM || pps <= 0 || seconds <= 0) { fprintf(stderr, "bad size, rate or duration\n"); return 2; }
  memset(datagram + prefix, 0x80, (size_t)payload);
  struct iovec iov = {.iov_base = datagram, .iov_len = prefix + (size_t)payload};
  struct mmsghdr msgs[BATCH];
  for (int i = 0; i < BATCH; i++) {
    memset(&msgs[i], 0, sizeof msgs[i]);
    msgs[i].msg_hdr.msg_name = &to;
    msgs[i].msg_hdr.msg_namelen = sizeof to;
    msgs[i].msg_hdr.msg_iov = &iov;
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  double start = now_s();
  long long sent = 0;
  for (;;) {
    double t = now_s() - start;
    if (t >= seconds) break;
    long long due = (long long)(t * pps);
    while (sent < due) {
      long long n = due - sent;
      int batch = n > BATCH ? BATCH : (int)n;
      int r = sendmmsg(fd, msgs, (unsigned)batch, 0);
      if (r < 0) {
        if (errno == EAGAIN || errno == ENOBUFS || errno == ECONNREFUSED) { sent += batch; continue; }
        perror("sendmmsg");
        return 1;
      }
      sent += r;
    }
    struct timespec nap = {0, 200000};
    nanosleep(&nap, NULL);
  }
  printf("{\"sent\":%lld}\n", sent);
  return 0;
}

static int sink(int argc, char **argv) {
  if (argc != 4) { fprintf(stderr, "usage: udp-load sink ip port\n"); return 2; }
  int fd = bind_udp(argv[2], atoi(argv[3]), 8 * 1024 * 1024);
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  getsockname(fd, (struct sockaddr *)&a, &len);
  printf("{\"port\":%d}\n", ntohs(a.sin_port));
  fflush(stdout);
  static uint8_t buffers[BATCH][MAX_DATAGRAM];
  struct iovec iov[BATCH];
  struct mmsghdr msgs[BATCH];
  for (int i = 0; i < BATCH; i++) {
    iov[i].iov_base = buffers[i];
    iov[i].iov_len = MAX_DATAGRAM;
    memset(&msgs[i], 0, sizeof msgs[i]);
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  long long packets = 0, bytes = 0;
  struct pollfd fds[2] = {{.fd = fd, .events = POLLIN}, {.fd = 0, .events = POLLIN}};
  char line[64];
  for (;;) {
    if (poll(fds, 2, 1000) < 0 && errno != EINTR) { perror("poll"); return 1; }
    if (fds[0].revents & POLLIN) {
      int r;
      while ((r = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL)) > 0) {
        packets += r;
        for (int i = 0; i < r; i++) bytes += msgs[i].msg_len;
      }
    }
    if (fds[1].revents & (POLLIN | POLLHUP)) {
      ssize_t n = read(0, line, sizeof line);
      if (n <= 0) return 0;
      printf("{\"packets\":%lld,\"bytes\":%lld}\n", packets, bytes);
      fflush(stdout);
    }
  }
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "gen") == 0) return gen(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "sink") == 0) return sink(argc, argv);
  fprintf(stderr, "usage: udp-load gen|sink ...\n");
  return 2;
}
