package valkey

import "errors"

// Sentinel errors. Every error a Client returns wraps exactly one of the
// first group (what went wrong with the server), so a caller can tell a
// down server from a refused password, a hung one or something that does
// not speak RESP with errors.Is. None of them ever carries a password.
var (
	// ErrDown: the server could not be reached or dropped the connection
	// (connection refused, no route, reset, closed).
	ErrDown = errors.New("server down or unreachable")
	// ErrAuth: the server refused the credentials (WRONGPASS) or wants
	// some (NOAUTH), or the password file could not be read.
	ErrAuth = errors.New("authentication failed")
	// ErrTimeout: the server did not answer within the dial or read/write
	// timeout, or the caller's context expired first.
	ErrTimeout = errors.New("timed out")
	// ErrProtocol: the peer's reply is not RESP, or not the reply the
	// command has (not a Valkey/Redis server, or a garbled stream).
	ErrProtocol = errors.New("protocol error")
	// ErrMaxClients: the server accepted the connection and refused it at
	// once because it already serves maxclients clients.
	ErrMaxClients = errors.New("server at maxclients")
	// ErrTLS: the TLS handshake failed (certificate not trusted, wrong
	// server name, a server that does not speak TLS).
	ErrTLS = errors.New("TLS handshake failed")
	// ErrServer: the server answered a command with an error reply other
	// than the ones above.
	ErrServer = errors.New("server error reply")
)

var (
	// ErrConfigUnavailable: CONFIG is disabled or renamed (rename-command)
	// or denied by an ACL. The server itself is fine: INFO still works.
	ErrConfigUnavailable = errors.New("CONFIG unavailable")
	// ErrBackoff: the last attempt failed and the client waits before it
	// connects again. The error also wraps the failure that started the
	// wait (ErrDown, ErrAuth, ...).
	ErrBackoff = errors.New("waiting before reconnecting")
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("client closed")
	// ErrInvalidConfig: a Config field is missing or wrong.
	ErrInvalidConfig = errors.New("invalid valkey target config")
	// ErrParse: INFO or CLIENT LIST text could not be parsed.
	ErrParse = errors.New("cannot parse reply")
)
