// Package drain is the Funnel behind `stormwatch drain`: it closes the
// established connections of one listener in paced batches, so that the
// clients reconnect to other servers a few at a time instead of all at
// once, and optionally paces the batches by the receiving hosts' headroom
// (the closed loop).
//
// # Design
//
// Run takes three parts, each an interface:
//
//   - a Source lists the connections (SockDiag: sock_diag dumps, no
//     privilege needed);
//   - a Method closes a batch of them (Destroy: the kernel's SOCK_DESTROY;
//     Valkey: the server's own CLIENT KILL ID, over a ValkeyServer such
//     as internal/valkey's Client);
//   - a Pacer, optional, holds each batch back and sizes it (ClosedLoop,
//     over Receivers: HTTPReceiver asks a stormwatch's /api/v1/headroom,
//     ReceiverFunc wraps this host's own headroom).
//
// Which connections. Only ESTABLISHED sockets whose local port is the
// listener's and whose local address maps to the listener (its exact
// address, else its family's wildcard, else a dual-stack ::, as the
// collector maps handshakes to listeners), with an inode: a socket without
// one was never accepted (it waits in the accept queue, and closing it
// would hand the server a dead socket) or is an orphan the server has
// already closed (which older kernels could leave stuck if aborted).
// Listeners, and client sockets connecting to the port (whose local port
// is an ephemeral one), are never touched.
//
// Order. "Oldest first" means in the order the server accepted them: the
// kernel gives no connection age in inet_diag (tcp_info has the time
// since the last send and receive, not since the handshake; the cookie is
// generated at first use, by the first dump that sees the socket). A
// socket's inode is assigned when accept() creates its file, from a
// counter each CPU takes in runs of 1024 (get_next_ino), shared with
// pipes and other pseudo-files. So inode order is accept order exactly
// among sockets accepted on one CPU, and within about 1024 inode
// allocations per CPU across CPUs: right for "the clients of the last
// hour before those of the last minute", not to the millisecond. It says
// nothing about connections the server accepted long after the handshake,
// and the 32-bit counter wraps after 4 billion allocations. Random order
// (Order Random) shuffles each batch's pick instead.
//
// A method that talks to the server rather than to the kernel (a
// ServerMethod: Valkey) is told the listeners found, and the connections
// are listed again after its Check, so that its own connection to the
// server is there from the start (and skipped, not counted as new). A
// method that knows the connections' age better than the inode (an
// Orderer: Valkey, from CLIENT LIST's age and id) orders them itself and
// puts first those it never closes (its own connection, replication
// links), which ride along with a batch without taking a place in it.
//
// Batches. A count, or a share of what is left (rounded up, so never
// empty), every Every; or, with Duration, the connections there at the
// start spread over ceil(Duration/Every) equal batches. The first batch
// goes at once and the last one about Duration-Every later. Max stops the
// drain after that many closed.
//
// Connections that arrive during the drain. The listener is listed again
// before every batch (the first excepted, taken just before it). A
// connection present at the last listing and missing now closed by
// itself: it counts as gone. A connection never seen before is new: it is
// counted, and drained too unless Config.OnlyInitial, so that a server
// still receiving a few clients while it leaves its load balancer ends
// with none. Clients that reconnect to the same server (it was not taken
// out of rotation) make such a drain go on: the New count in the progress
// says so, and OnlyInitial (--no-include-new) bounds the drain to what was
// there at the start.
//
// Closed loop. ClosedLoop asks every receiver before each batch and holds
// the batch while any of them answers with an error, not OK, or less
// headroom than MinHeadroom, asking again every Poll; the reason is handed
// to the progress display. The batch after a wait, or after a batch that
// made the tightest headroom fall by more than Fall, is halved (down to
// MinShare of the planned size); each batch after one that left the
// headroom in place doubles back towards the planned size. Timeout bounds
// the total wait over the drain.
//
// Stopping. Run's context ending stops the drain between batches: a batch
// in progress completes (its method call has a context of its own,
// bounded by BatchTimeout), the rest is left untouched, and the Summary
// says how many were closed.
//
// # Limits
//
// Linux only. The listing and the Destroy method work in the network
// namespace of the thread that first uses them. Destroy needs
// CAP_NET_ADMIN and CONFIG_INET_DIAG_DESTROY; clients see an RST, the
// server ECONNABORTED (a clean close needs the server's cooperation, which
// is what the Valkey method is for). The Valkey method needs no privilege
// but the server's (+client|list +client|kill +client|id for an ACL
// user); it reads CLIENT LIST once per batch (about 300 bytes a client on
// the server's event loop), and kills only clients the server lists with
// both ends of a drained connection. The listing dumps every established
// socket of the namespace, once per family per batch, and the kernel
// spends about 1.4 µs on each (measured on 6.18: 25 ms at 18k sockets;
// 0.34 s for the first listing and the checks at 100k): a drain of 50k
// connections with a batch a second spends a fifth of a core listing.
package drain
