// Package valkey is stormwatch's client for one Valkey or Redis server:
// the few commands that tell how a connection storm meets the server (INFO
// server/clients/stats, CONFIG GET of the accept parameters) and the two
// that drain it (CLIENT LIST, CLIENT KILL ID).
//
// # Design
//
// A Client never holds more than one connection to its server: it must
// not add to a storm. It speaks RESP through
// github.com/valkey-io/valkey-go, configured as a single-node client with
// one pipelined connection (concurrent calls share it), no client-side
// cache, no retries and no idle PING; every connection is opened by the
// Client's own dial function, which refuses to open a second one while
// one is open or being opened. The connection is opened by the first call
// (New does no I/O) and kept. After a failure the connection is closed and
// the next connect waits a backoff (Config.BackoffMin, doubling per
// consecutive failure, up to BackoffMax); calls in between fail at once
// with ErrBackoff and never touch the network, so a dying server sees at
// most one connect per backoff period however often it is polled.
//
// Errors wrap one sentinel per cause (ErrDown, ErrAuth, ErrTimeout,
// ErrProtocol, ErrMaxClients, ErrTLS, ErrServer; ErrConfigUnavailable for
// a renamed or disabled CONFIG). The password is read from a file on every
// connect, is never stored in Config, is scrubbed from any error text (a
// server that does not know a command echoes its arguments), and a Client
// prints as its address whatever the format verb.
//
// ParseInfo and ParseClientList are pure functions of the reply text.
// Discover picks the Valkey/Redis servers among a host's listeners from
// the process that owns each listening socket.
//
// # Limits
//
// One server, no cluster redirection or Sentinel. An ACL user needs +info
// +config|get +client|list +client|id +client|setname +hello +auth +ping
// (and +client|kill to drain). TLS is wired (CA, client certificate,
// server name) but tested only for its configuration errors, not against
// a TLS server. CA files are read once in New; client certificates and
// the password on every connect.
package valkey
