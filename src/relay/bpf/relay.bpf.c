/*
 * The relay's kernel fast path as an eBPF program (issue 23), for the tc ingress hook of each
 * interface a call's peers arrive on: `relay_eth` on Ethernet interfaces, `relay_ip` on L3 ones. It does what the nftables rules of nft-offload.ts do, in one
 * pass: a permitted peer's datagram to a relayed port is rewritten into one from that port to the
 * client's latched address, and sent straight out of the interface towards the client.
 *
 * Userspace (bpf-offload.ts) fills `routes` and reads `counters`; it precomputes the checksum
 * differences of each route, since every field the rewrite changes but the TTL is fixed per route.
 * Only option-less, unfragmented IPv4 UDP is touched; anything else, and any datagram no route of
 * this process names, goes on as if the program were not there (TC_ACT_UNSPEC: the next filter,
 * another relay process's, sees it).
 *
 * Self-contained on purpose (no kernel or libbpf headers): built with `clang -O2 -target bpf`.
 */
typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name

#define BPF_MAP_TYPE_HASH 1
#define BPF_MAP_TYPE_ARRAY 2
#define BPF_F_NO_PREALLOC 1
#define TC_ACT_UNSPEC (-1)
#define TC_ACT_SHOT 2
#define BPF_F_PSEUDO_HDR 0x10
#define BPF_F_MARK_MANGLED_0 0x20
#define AF_INET 2
#define ETH_HLEN 14
/* Offsets in the IP header and after it. */
#define IP_CSUM_OFF 10
#define UDP_CSUM_OFF (20 + 6)
/* Big-endian constants as a little-endian load sees them (the BPF target is the host's order). */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define BE16(x) ((__u16)((((x) & 0xff) << 8) | ((x) >> 8)))
#else
#define BE16(x) ((__u16)(x))
#endif

/* The fields of struct __sk_buff this program reads, at their UAPI offsets. */
struct __sk_buff {
  __u32 len, pkt_type, mark, queue_mapping, protocol, vlan_present, vlan_tci, vlan_proto, priority;
  __u32 ingress_ifindex, ifindex, tc_index, cb[5], hash, tc_classid, data, data_end;
};

struct bpf_redir_neigh {
  __u32 nh_family;
  __u32 ipv4_nh; /* network order; the kernel's union with an IPv6 address */
  __u32 ipv6_rest[3];
};

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_l3_csum_replace)(struct __sk_buff *skb, __u32 off, __u64 from, __u64 to, __u64 flags) = (void *)10;
static long (*bpf_l4_csum_replace)(struct __sk_buff *skb, __u32 off, __u64 from, __u64 to, __u64 flags) = (void *)11;
static long (*bpf_skb_change_head)(struct __sk_buff *skb, __u32 len, __u64 flags) = (void *)43;
static long (*bpf_redirect_neigh)(__u32 ifindex, struct bpf_redir_neigh *params, int plen, __u64 flags) = (void *)152;

/* Where a datagram was sent: the relayed address and port (network order). */
struct route_key {
  __u32 addr;
  __u16 port;
  __u16 zero;
};

/* Layout shared with bpf-offload.ts (routeValue()): addresses and ports in network order. */
struct route {
  __u32 peer_addr;   /* the one permitted source */
  __u16 peer_port;
  __u16 relay_port;  /* the new source: the relayed port */
  __u32 relay_addr;
  __u32 client_addr; /* the new destination: the client's latch */
  __u16 client_port;
  __u16 addr_diff;   /* one's-complement difference of the addresses (IP header, UDP pseudo-header) */
  __u16 port_diff;   /* and of the UDP ports */
  __u16 zero;
  __u32 ifindex;     /* the interface out, towards the client */
  __u32 next_hop;    /* the client itself or the gateway towards it (network order) */
  __u32 slot;        /* index into counters */
};

struct counter {
  __u64 packets;
  __u64 bytes; /* UDP payload bytes, as the userspace path counts them */
};

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 65536);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct route_key);
  __type(value, struct route);
} routes SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 65536);
  __type(key, __u32);
  __type(value, struct counter);
} counters SEC(".maps");

static __u32 fold(__u32 sum) {
  sum = (sum & 0xffff) + (sum >> 16);
  return (sum & 0xffff) + (sum >> 16);
}

/*
 * One pass over a datagram whose IP header starts `l2` bytes into the packet: 14 on an Ethernet
 * interface (veth, NICs), 0 on an L3 one (TUN, WireGuard), where tc sees no link header.
 */
static __attribute__((always_inline)) int forward(struct __sk_buff *skb, const __u32 l2) {
  __u8 *data = (__u8 *)(long)skb->data;
  __u8 *end = (__u8 *)(long)skb->data_end;
  if (skb->protocol != BE16(0x0800) || data + l2 + 28 > end) return TC_ACT_UNSPEC;
  if (l2 && *(__u16 *)(data + 12) != BE16(0x0800)) return TC_ACT_UNSPEC;
  __u8 *ip = data + l2;
  /* Version 4 with no options, UDP, neither a fragment nor a first fragment. */
  if (ip[0] != 0x45 || ip[9] != 17 || (*(__u16 *)(ip + 6) & BE16(0x3fff)) != 0) return TC_ACT_UNSPEC;
  __u8 *udp = ip + 20;
  struct route_key key = {*(__u32 *)(ip + 16), *(__u16 *)(udp + 2), 0};
  struct route *r = bpf_map_lookup_elem(&routes, &key);
  if (!r) return TC_ACT_UNSPEC;
  if (*(__u32 *)(ip + 12) != r->peer_addr || *(__u16 *)udp != r->peer_port) return TC_ACT_UNSPEC;
  __u32 slot = r->slot;
  struct counter *c = bpf_map_lookup_elem(&counters, &slot);
  if (c) {
    __u16 total = *(__u16 *)(ip + 2);
    __sync_fetch_and_add(&c->packets, 1);
    __sync_fetch_and_add(&c->bytes, (__u64)(BE16(total)) - 28);
  }
  /* The TTL (and the protocol beside it) as one header word, before and after. */
  __u16 old_ttl = *(__u16 *)(ip + 8);
  ip[8] = 64;
  __u16 new_ttl = *(__u16 *)(ip + 8);
  *(__u32 *)(ip + 12) = r->relay_addr;
  *(__u32 *)(ip + 16) = r->client_addr;
  *(__u16 *)udp = r->relay_port;
  *(__u16 *)(udp + 2) = r->client_port;
  __u32 ip_diff = fold((__u32)r->addr_diff + (__u16)~old_ttl + new_ttl);
  __u32 pseudo_diff = r->addr_diff;
  __u32 port_diff = r->port_diff;
  struct bpf_redir_neigh nh = {AF_INET, r->next_hop, {0, 0, 0}};
  __u32 ifindex = r->ifindex;
  /* A zero UDP checksum (none, in IPv4) stays zero; the kernel keeps a partial one partial. */
  if (bpf_l4_csum_replace(skb, l2 + UDP_CSUM_OFF, 0, pseudo_diff, BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0) ||
      bpf_l4_csum_replace(skb, l2 + UDP_CSUM_OFF, 0, port_diff, BPF_F_MARK_MANGLED_0) ||
      bpf_l3_csum_replace(skb, l2 + IP_CSUM_OFF, 0, ip_diff, 0))
    return TC_ACT_SHOT;
  /*
   * bpf_redirect_neigh takes a packet with a link header, which it strips before it resolves the
   * next hop (it drops one without): from an L3 interface, room for one is made (zeroed, so not a
   * multicast destination).
   */
  if (!l2 && bpf_skb_change_head(skb, ETH_HLEN, 0)) return TC_ACT_SHOT;
  return bpf_redirect_neigh(ifindex, &nh, sizeof(nh), 0);
}

SEC("tc")
int relay_eth(struct __sk_buff *skb) { return forward(skb, ETH_HLEN); }

SEC("tc")
int relay_ip(struct __sk_buff *skb) { return forward(skb, 0); }

char LICENSE[] SEC("license") = "GPL";
